"""`thinkgate calibrate collect` on in-process fakes: grading, resume, budget,
the judge, failures and the input formats (the real local models: test_collect_local.py)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from calibrate import cli, collect
from calibrate.collect_cost import Budget, RowEstimate, prompt_bound
from calibrate.outcomes import read
from router.errors import UpstreamUnavailable
from router.upstreams.fake import FakeReply, FakeUpstream

CONFIG = """
models:
  fast: {provider: fake, model: tiny, price: {input: 1.0, output: 2.0}}
  reasoning: {provider: fake, model: big, price: {input: 10.0, output: 20.0}}
  judge: {provider: fake, model: judge, price: {input: 5.0, output: 5.0}}
routes:
  auto: {fast: fast, reasoning: reasoning}
selfref: {mode: quantile_prob}
"""

PROMPTS = [
    {"id": f"q{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(1, 9)
]


def question(body):
    return body["messages"][-1]["content"].split("\n\n")[0]


def fast_handler(body):
    # right on even numbers only, so the table has both outcomes
    n = int(question(body).split()[2])
    return FakeReply(f"The answer is {2 * n if n % 2 == 0 else 2 * n + 1}.", token_prob=0.5 + n / 20)


def strong_handler(body):
    n = int(question(body).split()[2])
    return f"Step by step: {n} + {n}. The answer is {2 * n}."


def args_for(tmp_path: Path, prompts_file: str = "prompts.jsonl", **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    collect.configure(parser)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    prompts = tmp_path / prompts_file
    if not prompts.exists():
        prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    argv = ["--prompts", str(prompts), "--config", str(cfg), "-o", str(tmp_path / "out.jsonl"), "--quiet"]
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return parser.parse_args(argv)


def clients(**handlers):
    up = {
        "fast": FakeUpstream("fast", "tiny", handlers.get("fast", fast_handler)),
        "reasoning": FakeUpstream("reasoning", "big", handlers.get("reasoning", strong_handler)),
    }
    if "judge" in handlers:
        up["judge"] = FakeUpstream("judge", "judge", handlers["judge"])
    return up


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_collect_grades_both_models_and_writes_the_outcome_contract(tmp_path, capsys):
    ups = clients()
    assert collect.run(args_for(tmp_path, grader="math", max_tokens=32), clients=ups) == 0
    out = rows(tmp_path / "out.jsonl")
    by_id = {r["id"]: r for r in out}
    assert sorted(by_id) == sorted(p["id"] for p in PROMPTS)
    for i in range(1, 9):
        r = by_id[f"q{i}"]
        assert (r["fast"], r["strong"]) == (float(i % 2 == 0), 1.0)
        assert r["prompt"] == f"What is {i} + {i}?"  # the stored prompt is the user's, without the instruction
        assert r["grader"] == "math" and r["reference"] == str(2 * i)
        assert set(r["latency"]) == {"fast", "strong"}
        # every fast token has probability 0.5 + i/20, so any quantile of them is that
        assert r["fast_confidence"] == pytest.approx(0.5 + i / 20)
    # the instruction went to the models, and logprobs were asked of the fast model only
    fast_body = ups["fast"].calls[0]
    assert "\\boxed{}" in fast_body["messages"][-1]["content"] and fast_body["logprobs"] is True
    assert fast_body["max_tokens"] == 32 and fast_body["temperature"] == 0
    assert "logprobs" not in ups["reasoning"].calls[0]
    # cost = the servers' usage at the config's prices
    r = by_id["q1"]
    body = ups["fast"].calls[[question(c) for c in ups["fast"].calls].index("What is 1 + 1?")]
    usage = FakeUpstream._usage(body, len("The answer is 3.".split()))
    assert r["fast_tokens"] == usage["total_tokens"]
    assert r["fast_cost"] == pytest.approx((usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6)
    # calibrate's own reader takes the file as it is
    table = read(tmp_path / "out.jsonl")
    assert len(table) == 8 and sum(table.fast) == 4 and sum(table.strong) == 8
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1].removeprefix("collect: "))
    assert summary["written"] == 8 and summary["failed"] == 0 and summary["stopped"] is None
    assert 0 < summary["spent_usd"] <= summary["estimated_usd"]


def test_resume_skips_done_ids_and_repairs_a_cut_line(tmp_path):
    first = clients()
    collect.run(args_for(tmp_path, grader="math", limit=3, seed=1), clients=first)
    out = tmp_path / "out.jsonl"
    done = {r["id"] for r in rows(out)}
    assert len(done) == 3
    # a hard kill in the middle of a write leaves half a line
    with open(out, "a") as fh:
        fh.write('{"id": "q9", "prompt": "cut sh')
    again = clients()
    assert collect.run(args_for(tmp_path, grader="math"), clients=again) == 0
    ids = [r["id"] for r in rows(out)]
    assert sorted(ids) == sorted(p["id"] for p in PROMPTS) and len(ids) == len(set(ids))
    asked = {question(b).split()[2] for b in again["fast"].calls}
    assert asked == {p["id"][1:] for p in PROMPTS if p["id"] not in done}
    # and a third run has nothing to do
    third = clients()
    assert collect.run(args_for(tmp_path, grader="math"), clients=third) == 0
    assert third["fast"].calls == []


def test_budget_stops_before_it_is_exceeded(tmp_path, capsys):
    args = args_for(tmp_path, grader="math", max_tokens=16, concurrency=1)
    plan = collect.make_plan(args)
    per_row = max(e.usd for e in plan.estimates.values())
    budget = 1.5 * per_row  # room for one row's upper bound, not two
    assert collect.run(args_for(tmp_path, grader="math", max_tokens=16, concurrency=1, budget=budget), clients=clients()) == 0
    out = rows(tmp_path / "out.jsonl")
    assert 1 <= len(out) < 8  # one upper bound always fits; actual costs are lower, so maybe more
    spent = sum(r["fast_cost"] + r["strong_cost"] for r in out)
    assert spent <= budget
    left = [e.usd for i, e in plan.estimates.items() if i not in {r["id"] for r in out}]
    assert spent + min(left) > budget  # it stopped because the next row could have exceeded it
    err = capsys.readouterr().err
    assert "stopped by the budget" in err and '"stopped": "budget"' in err
    # the token cap stops it too
    (tmp_path / "out.jsonl").unlink()
    tokens = plan.estimates["q1"].tokens + 1
    assert collect.run(args_for(tmp_path, grader="math", max_tokens=16, budget_tokens=tokens), clients=clients()) == 0
    assert len(rows(tmp_path / "out.jsonl")) == 1


def test_budget_reserves_rows_in_flight():
    b = Budget(usd=1.0)
    est = RowEstimate(tokens=10, usd=0.4)
    assert b.reserve(est) and b.reserve(est) and not b.reserve(est)  # 0.8 held; 1.2 would exceed
    b.settle(est, 0.1, 5)  # the row cost less than its upper bound: room again
    assert b.reserve(est) and b.spent_usd == pytest.approx(0.1) and b.spent_tokens == 5


def pairwise_judge(body):
    # prefers the answer containing "Step by step" wherever it is shown
    user = body["messages"][-1]["content"]
    a = user.split("[The Start of Assistant A's Answer]")[1].split("[The End")[0]
    if "q3" in user or "3 + 3" in user:
        return "I cannot decide."  # no verdict: the row must be missing, not guessed
    return "[[A]]" if "Step by step" in a else "[[B]]"


def test_judge_pairwise_in_both_orders_and_missing_verdicts(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": p["id"], "prompt": p["question"]}) + "\n" for p in PROMPTS[:4]))
    ups = clients(judge=pairwise_judge)
    assert collect.run(args_for(tmp_path, judge="judge"), clients=ups) == 0  # auto + no reference -> the judge
    out = {r["id"]: r for r in rows(tmp_path / "out.jsonl")}
    assert sorted(out) == ["q1", "q2", "q4"]
    for r in out.values():
        assert (r["fast"], r["strong"]) == (0.0, 1.0) and r["grader"] == "judge-pairwise"
        assert r["judge"]["verdicts"] == ["B", "A"]  # the strong answer won as B, then as A
        assert r["judge"]["cost"] > 0
    assert len(ups["judge"].calls) == 8  # two orders per prompt
    first, second = ups["judge"].calls[:2]
    assert first["messages"][1]["content"] != second["messages"][1]["content"]
    missing = rows(tmp_path / "out.missing.jsonl")
    assert [m["id"] for m in missing] == ["q3"] and missing[0]["fast"] is None
    assert missing[0]["error"] == "unparseable verdict" and missing[0]["judge"]["replies"]
    # resume does not ask again for rows already judged, missing ones included
    again = clients(judge=pairwise_judge)
    collect.run(args_for(tmp_path, judge="judge"), clients=again)
    assert again["judge"].calls == []


def test_judge_absolute_scores_out_of_ten(tmp_path):
    def rate(body):
        return "Rating: [[9]]" if "Step by step" in body["messages"][-1]["content"] else "Rating: [[3]]"

    ups = clients(judge=rate)
    assert collect.run(args_for(tmp_path, grader="judge-absolute", judge="judge", limit=2), clients=ups) == 0
    for r in rows(tmp_path / "out.jsonl"):
        assert (r["fast"], r["strong"]) == (0.3, 0.9)
        assert "Reference" in ups["judge"].calls[0]["messages"][1]["content"]  # the row's answer was shown


def test_a_failed_call_is_retried_by_the_next_run(tmp_path, capsys):
    def flaky(body):
        if "5 + 5" in question(body):
            raise UpstreamUnavailable("upstream fast is unreachable", upstream="fast")
        return fast_handler(body)

    assert collect.run(args_for(tmp_path, grader="math"), clients=clients(fast=flaky)) == 0
    assert "q5" not in {r["id"] for r in rows(tmp_path / "out.jsonl")}
    assert "failed q5: UpstreamUnavailable" in capsys.readouterr().err
    again = clients()
    collect.run(args_for(tmp_path, grader="math"), clients=again)
    assert [question(b) for b in again["fast"].calls] == ["What is 5 + 5?"]


def test_grader_column_and_auto_kinds(tmp_path):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text(
        "id,prompt,answer,grader\n"
        'c1,"Pick one:\nA. 3\nB. 4\nWhat is 2 + 2?",B,\n'
        "e1,Capital of France?,Paris,exact\n"
        "m1,What is 2 + 2?,4,\n"
    )
    ups = clients(fast=lambda b: "B. 4", reasoning=lambda b: "The answer is Paris")
    assert collect.run(args_for(tmp_path, "prompts.csv"), clients=ups) == 0
    out = {r["id"]: r for r in rows(tmp_path / "out.jsonl")}
    assert {k: r["grader"] for k, r in out.items()} == {"c1": "choice", "e1": "exact", "m1": "math"}
    assert (out["c1"]["fast"], out["e1"]["strong"], out["m1"]["fast"]) == (1.0, 1.0, 1.0)
    assert "letter" in ups["fast"].calls[[c["messages"][-1]["content"][:4] for c in ups["fast"].calls].index("Pick")]["messages"][-1]["content"]


def test_decision_log_export_as_input(tmp_path, capsys):
    recs = [
        {"id": "req-1", "created": 1.0, "alias": "auto", "endpoint": "chat", "route": "fast", "status": 200, "prompt": "What is 2 + 2?"},
        {"id": "req-2", "created": 2.0, "alias": "auto", "endpoint": "chat", "route": "fast", "status": 200, "prompt": None},
        {"id": "req-3", "created": 3.0, "alias": "auto", "endpoint": "chat", "route": "cache", "status": 200, "prompt": "hi"},
        {"id": "req-4", "created": 4.0, "alias": "auto", "endpoint": "chat", "route": "reasoning", "status": 200, "prompt": "Prove it."},
    ]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    ups = clients(fast=lambda b: "4", reasoning=lambda b: "Four.", judge=lambda b: "[[C]]")
    assert collect.run(args_for(tmp_path, judge="judge"), clients=ups) == 0
    out = rows(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == ["req-1", "req-4"] and all(r["fast"] == r["strong"] == 0.5 for r in out)  # ties
    err = capsys.readouterr().err
    assert "skipped 1 records without a prompt" in err and "skipped 1 records cache hits" in err
    # an export with no prompts at all says why
    (tmp_path / "prompts.jsonl").write_text(json.dumps(recs[1]) + "\n")
    with pytest.raises(ValueError, match="store_prompt was off"):
        collect.make_plan(args_for(tmp_path, judge="judge"))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"grader": "math"}, "needs a reference answer"),
        ({}, "pass --judge MODEL"),
        ({"grader": "judge-pairwise"}, "needs --judge MODEL"),
        ({"judge": "gpt-9"}, "--judge 'gpt-9' is not a configured model"),
        ({"alias": "nope"}, "no route alias 'nope'"),
    ],
)
def test_clear_errors_through_the_command_line(tmp_path, capsys, kw, message):
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"id": "x", "prompt": "hello"}) + "\n")
    args = args_for(tmp_path, **kw)
    argv = ["collect", "--prompts", args.prompts, "--config", args.config, "-o", args.out]
    for k, v in kw.items():
        argv += ["--" + k, v]
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err


def test_dry_run_prints_an_upper_bound_and_calls_nothing(tmp_path, capsys):
    ups = clients()
    assert collect.run(args_for(tmp_path, grader="math", max_tokens=100, dry_run=True), clients=ups) == 0
    assert ups["fast"].calls == [] and not (tmp_path / "out.jsonl").exists()
    err = capsys.readouterr().err
    # 8 prompts: each fast call at most (prompt, 100) at $1/$2, each strong at $10/$20 per 1M
    bound = sum((prompt_bound(collect.with_instruction(p["question"], "math", "auto")) * 11 + 100 * 22) / 1e6 for p in PROMPTS)
    assert f"estimated cost at most ${bound:.4f}" in err
    assert math.isclose(bound, sum(e.usd for e in collect.make_plan(args_for(tmp_path, grader="math", max_tokens=100)).estimates.values()))


def test_the_example_collect_configs_are_valid():
    from router import config

    root = Path(__file__).resolve().parents[2] / "examples"
    pair = config.load(root / "collect-pair.yaml")
    assert pair.models["fast"].chat_format == "gemma"
    thinking = config.load(root / "collect-thinking.yaml")
    # the two roles get separate local servers (different n_ctx), so they run side by side
    assert thinking.models["fast"].n_ctx != thinking.models["reasoning"].n_ctx
    assert thinking.models["reasoning"].deer is not None


def test_derived_gsm8k_steps(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("derive", Path(__file__).resolve().parents[2] / "scripts" / "derive_prompts.py")
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    src = tmp_path / "gsm8k.jsonl"
    src.write_text(json.dumps({"id": "g1", "cot": "She has 16-3-4 = <<16-3-4=9>>9 eggs, 9*2=<<9*2=18>>18 and <<1.5*3=4.5>>4.5 and <<18=18>>18."}) + "\n")
    rows = derive.gsm8k_steps(src)
    # whole-number results of real operations only
    assert [(r["prompt"], r["answer"]) for r in rows] == [("What is 16 - 3 - 4?", "9"), ("What is 9 * 2?", "18")]
