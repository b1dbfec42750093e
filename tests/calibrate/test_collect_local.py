"""`thinkgate calibrate collect` on the embedded default's two real roles: SmolLM2-135M on
llama.cpp as the fast model and as the DEER-driven thinking model, with a reference
grader and with the judge; an interrupted run resumed; the budget stopping a run.
Bounded: a few arithmetic prompts and a handful of tokens per answer."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibrate import collect
from calibrate.outcomes import read
from policies.judge import pairwise_scores
from router import config
from router.deer.clients import build_model
from router.upstreams import LocalServers
from tests.e2e.conftest import local_model_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [{"id": f"p{a}-{b}", "question": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in ((1, 1), (2, 3), (4, 4), (3, 5), (6, 2), (5, 5))]


@pytest.fixture(scope="module")
def servers():
    why = local_model_available()
    if why:
        from tests.components import missing

        missing(why)
    local = LocalServers()
    settings = config.embedded_default()
    for name, ms in settings.models.items():
        build_model(name, ms, local)  # starts the one shared SmolLM2 server
    yield settings, local
    local.stop()


def fresh_clients(servers, names=("fast", "reasoning")):
    settings, local = servers  # the servers are running: this only makes new clients for this run's loop
    return {n: build_model(n, settings.models[n], local) for n in names}


def make_args(tmp_path: Path, n: int, **kw) -> argparse.Namespace:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS[:n]))
    parser = argparse.ArgumentParser()
    collect.configure(parser)
    argv = ["--prompts", str(prompts), "-o", str(tmp_path / "out.jsonl"), "--quiet", "--max-tokens", "16", "--concurrency", "1"]
    for k, v in kw.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    return parser.parse_args(argv)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_reference_grader_on_the_real_roles(servers, tmp_path):
    args = make_args(tmp_path, 3, grader="math")
    assert collect.run(args, clients=fresh_clients(servers)) == 0
    table = read(tmp_path / "out.jsonl")
    assert sorted(table.ids) == sorted(p["id"] for p in PROMPTS[:3])
    for r in lines(tmp_path / "out.jsonl"):
        assert r["fast"] in (0.0, 1.0) and r["strong"] in (0.0, 1.0)
        assert r["fast_tokens"] > 0 and r["strong_tokens"] > 0
        assert r["fast_cost"] > 0 and r["strong_cost"] > 0  # priced from the embedded config
        # llama.cpp sent logprobs: Self-Ref's confidence of the fast answer is a probability
        assert r["fast_confidence"] is not None and 0.0 < r["fast_confidence"] <= 1.0
        assert r["latency"]["fast"] > 0 and r["latency"]["strong"] > 0
        assert r["fast_answer"] and isinstance(r["strong_answer"], str)


def test_judge_on_the_real_roles(servers, tmp_path):
    args = make_args(tmp_path, 2, grader="judge-pairwise", judge="fast", judge_max_tokens=12)
    assert collect.run(args, clients=fresh_clients(servers)) == 0
    done = lines(tmp_path / "out.jsonl") + lines(tmp_path / "out.missing.jsonl")
    assert sorted(r["id"] for r in done) == sorted(p["id"] for p in PROMPTS[:2])
    for r in done:
        assert len(r["judge"]["verdicts"]) == 2 and r["judge"]["tokens"] > 0
        # a row is scored exactly by the two-order rule, or missing when a verdict was unreadable
        assert (None if r["fast"] is None else (r["fast"], r["strong"])) == pairwise_scores(*r["judge"]["verdicts"])


def test_budget_stops_the_run(servers, tmp_path, capsys):
    args = make_args(tmp_path, 6, grader="math")
    per_row = max(e.usd for e in collect.make_plan(args).estimates.values())
    args = make_args(tmp_path, 6, grader="math", budget=1.5 * per_row)
    assert collect.run(args, clients=fresh_clients(servers)) == 0
    out = lines(tmp_path / "out.jsonl")
    assert 1 <= len(out) < 6
    assert sum(r["fast_cost"] + r["strong_cost"] for r in out) <= 1.5 * per_row
    assert '"stopped": "budget"' in capsys.readouterr().err


def test_resume_after_an_interrupt(servers, tmp_path):
    # a separate process, killed (SIGTERM, as a CI runner or Ctrl-C would) once a row is on disk
    args = make_args(tmp_path, 4, grader="math")
    out = Path(args.out)
    cmd = [sys.executable, "-m", "calibrate", "collect", "--prompts", args.prompts, "-o", args.out,
           "--grader", "math", "--max-tokens", "16", "--concurrency", "1", "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 400
    while not lines(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    first = [r["id"] for r in lines(out)]
    assert 1 <= len(first) and proc.returncode in (130, 0), err
    if proc.returncode == 130:
        assert len(first) < 4 and "rerun the same command to resume" in err
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in lines(out)]
    assert sorted(ids) == sorted(p["id"] for p in PROMPTS[:4]) and len(ids) == len(set(ids))
    assert f"({len(first)} already in" in done.stderr
