import json
import math
import re

import httpx
import pytest

from calibrate import selfref as cal
from calibrate.selfref_analysis import auroc, auroc_ci, choose, table_rows, tradeoff
from calibrate.selfref_data import arith_items, grade, load_items


def test_auroc_known_values():
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    # one inverted pair out of four
    assert auroc([0.9, 0.3, 0.4, 0.1], [True, True, False, False]) == pytest.approx(0.75)
    # unscored items are left out; one class only -> None
    assert auroc([None, 0.9, 0.1], [False, True, False]) == 1.0
    assert auroc([0.9, 0.8], [True, True]) is None


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    scores = [0.1, 0.4, 0.4, 0.35, 0.8, 0.8, 0.8, 0.2, 0.9, 0.05]
    labels = [False, True, False, True, True, False, True, False, True, False]
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_auroc_ci_brackets_the_estimate():
    scores = [i / 40 for i in range(40)]
    labels = [(i % 3 != 0) == (i > 15) for i in range(40)]
    lo, hi = auroc_ci(scores, labels, n_boot=200)
    assert lo <= auroc(scores, labels) <= hi and hi - lo < 0.5
    assert auroc_ci([0.9, 0.1], [True, True]) is None


def test_choose_escalates_the_fewest_for_the_target():
    scores = [0.95, 0.9, 0.85, 0.6, 0.5, 0.3, 0.2, 0.1]
    labels = [True, True, True, False, True, False, False, False]
    points = tradeoff(scores, labels)
    assert points[0].escalation_rate == 0 and points[0].kept_accuracy == pytest.approx(0.5)
    assert points[-1].escalation_rate == 1 and points[-1].kept_accuracy is None
    pick = choose(points, 0.9)
    # keeping the top three (all right) is the least escalation with >= 90 % kept correct
    assert pick.threshold == 0.85 and pick.escalation_rate == pytest.approx(5 / 8) and pick.kept_accuracy == 1.0
    pick = choose(points, 0.75)  # top five: four of five right
    assert pick.threshold == 0.5 and pick.kept_accuracy == pytest.approx(0.8)
    # two lucky answers are not enough evidence when min_kept asks for more
    pick = choose(tradeoff([0.99, 0.98, 0.5, 0.4], [True, True, False, False]), 0.9, min_kept=3)
    assert pick.escalation_rate == 1.0 and pick.threshold > 1


def test_choose_unreachable_target_escalates_everything():
    points = tradeoff([0.9, 0.8], [False, False])
    pick = choose(points, 0.9)
    assert pick.escalation_rate == 1.0 and pick.threshold > 1


def test_tradeoff_missing_scores_follow_on_missing():
    scores, labels = [None, 0.9, 0.1], [False, True, False]
    trust = tradeoff(scores, labels, "trust")
    esc = tradeoff(scores, labels, "escalate")
    at = lambda pts, t: next(p for p in pts if p.threshold == t)  # noqa: E731
    assert at(trust, 0.9).kept == 2  # the unscored answer is kept
    assert at(esc, 0.9).kept == 1


def test_table_rows_cover_the_sweep():
    scores = [i / 20 for i in range(20)]
    labels = [s > 0.5 for s in scores]
    rows = table_rows(tradeoff(scores, labels))
    rates = [r.escalation_rate for r in rows]
    assert rates[0] == 0 and rates[-1] == 1 and rates == sorted(rates)
    assert len(rows) == 11


def test_arith_items_are_deterministic_and_grow():
    a, b = arith_items(40, seed=3), arith_items(40, seed=3)
    assert a == b and arith_items(40, seed=4) != a
    for it in a:
        x, op, y = re.match(r"What is (\d+) ([-+*]) (\d+)\?", it.prompt).groups()
        assert int(it.answer) == {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op]
        assert int(it.answer) >= 0
    size = lambda it: max(int(n) for n in re.findall(r"\d+", it.prompt))  # noqa: E731
    assert max(size(it) for it in a[:2]) <= 5
    assert sum(size(it) for it in a[-10:]) > 3 * sum(size(it) for it in a[:10])


@pytest.mark.parametrize(
    "output, gold, ok",
    [
        ("The answer is 18.", "18", True),
        ("3 + 4 = 7", "7", True),
        ("She makes $1,200 a day. The answer is $1,200.", "1200", True),
        ("The answer is 18.0", "18", True),
        ("The answer is 17. <CN>", "18", False),
        ("I don't know", "18", False),
        ("", "18", False),
    ],
)
def test_grade(output, gold, ok):
    assert grade(output, gold)[1] is ok


def test_load_items_reads_gsm8k_shape(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"problem": "1+1?", "answer": "2", "id": "a"}\n\n{"question": "2+2?", "answer": 4}\n')
    items = load_items(f)
    assert [(i.id, i.prompt, i.answer) for i in items] == [("a", "1+1?", "2"), ("row-2", "2+2?", "4")]
    f.write_text('{"answer": "2"}\n')
    with pytest.raises(ValueError, match="needs 'problem'"):
        load_items(f)


def _fake_server(requests):
    """A fake OpenAI server: right on small sums (confident), wrong on big ones (unsure)."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        assert body["logprobs"] is True and body["top_logprobs"] == 5
        x, op, y = re.search(r"What is (\d+) ([-+*]) (\d+)", body["messages"][0]["content"]).groups()
        value = {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op]
        hard = max(len(x), len(y)) >= 2
        answer, p = (str(value + 1), 0.3) if hard else (str(value), 0.95)
        toks = [("The", 0.9), (" answer", 0.9), (" is", 0.9), (" " + answer, p), (".", 0.9)]
        content = [{"token": t, "logprob": math.log(q), "top_logprobs": [{"token": t, "logprob": math.log(q)}]} for t, q in toks]
        return httpx.Response(
            200,
            json={
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(t for t, _ in toks)}, "logprobs": {"content": content}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": len(toks)},
            },
        )

    return httpx.MockTransport(handler)


def test_run_end_to_end_with_a_fake_server(tmp_path, capsys):
    requests = []
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    args = cal.build_parser().parse_args(
        ["--base-url", "http://fake/v1", "--model", "m", "--arith", "40", "--out", str(out), "--plot", str(png), "--quiet", "--concurrency", "3"]
    )
    assert cal.run(args, transport=_fake_server(requests)) == 0
    assert len(requests) == 40 and all(r["model"] == "m" and r["temperature"] == 0 for r in requests)
    result = json.loads(out.read_text())
    hard = sum(1 for r in result["records"] if not r["correct"])
    assert 0 < hard < 40 and result["accuracy"] == pytest.approx(1 - hard / 40)
    m = result["modes"]["answer_span"]
    assert m["auroc"] == 1.0 and m["kept_accuracy"] == 1.0
    assert m["escalation_rate"] == pytest.approx(hard / 40)  # exactly the wrong answers escalate
    assert result["modes"]["confidence_token"]["coverage"] == 0.0
    assert result["recommended"]["mode"] in ("answer_span", "mean_logprob", "min_prob", "quantile_prob")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "AUROC" in printed and "recommended: selfref.mode=" in printed

    # re-analysing the saved records gives the same choice without a server
    args = cal.build_parser().parse_args(["--from-results", str(out), "--target-precision", "0.9", "--quiet"])
    assert cal.run(args) == 0
    assert "recommended: selfref.mode=" in capsys.readouterr().out


def test_run_records_failures(tmp_path, capsys):
    transport = httpx.MockTransport(lambda r: httpx.Response(400, json={"error": {"message": "bad"}}))
    args = cal.build_parser().parse_args(["--base-url", "http://fake/v1", "--model", "m", "--arith", "3", "--quiet"])
    assert cal.run(args, transport=transport) == 1
    assert "errors 3" in capsys.readouterr().out


def test_the_configured_fast_model_is_used_without_base_url(tmp_path, capsys):
    cfg = tmp_path / "tg.yaml"
    cfg.write_text(
        "models:\n"
        "  quick: {provider: openai, api_base: 'http://fake/v1', model: quick-1}\n"
        "  deep: {provider: openai, api_base: 'http://other/v1', model: deep-1}\n"
        "routes:\n"
        "  auto: {fast: quick, reasoning: deep}\n"
    )
    assert cal.configured_fast_model(str(cfg)) == ("http://fake/v1", "quick-1", None)
    requests = []
    args = cal.build_parser().parse_args(["--config", str(cfg), "--arith", "4", "--quiet"])
    assert cal.run(args, transport=_fake_server(requests)) == 0
    assert {r["model"] for r in requests} == {"quick-1"}
    with pytest.raises(ValueError, match="no route alias"):
        cal.configured_fast_model(str(cfg), "nope")
