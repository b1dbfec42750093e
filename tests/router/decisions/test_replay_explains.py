"""Replay says what it could not do and why, and prices the fast cost it did not
observe from the configured prices (issue 27)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from router.config import DecisionLogSettings
from router.decisions.log import to_record
from router.decisions.replay import Plan, format_report, main, replay
from router.types import Decision


def rec(store_prompt: bool = False, **kw: Any) -> dict[str, Any]:
    base = {"alias": "auto", "route": "reasoning", "reason": "classifier", "cache": "miss", "threshold": 0.5,
            "prompt_tokens": 100, "completion_tokens": 100}
    return to_record(Decision(**{**base, **kw}), DecisionLogSettings(store_prompt=store_prompt))  # type: ignore[arg-type]


def records() -> list[dict[str, Any]]:
    # the embedded default's shape: reasoning answers at $1/$4 per 1M, and a pinned `fast` alias
    # whose baseline is its own cost (ratio 1: it must not price the fast route)
    cost = (100 * 1.0 + 100 * 4.0) / 1e6
    rs = [rec(difficulty=0.6, cost=cost, baseline_cost=cost) for _ in range(4)]
    pinned = (100 * 0.1 + 100 * 0.4) / 1e6
    rs += [rec(alias="fast", route="fast", reason="alias", cost=pinned, baseline_cost=pinned) for _ in range(3)]
    return rs


def config_file(tmp_path: Path) -> Path:
    cfg = {
        "models": {"fast": {"provider": "fake", "model": "f", "price": {"input": 0.1, "output": 0.4}},
                   "reasoning": {"provider": "fake", "model": "r", "reasoning": True, "price": {"input": 1.0, "output": 4.0}}},
        "routes": {"auto": {}, "fast": {"pin": "fast"}},
    }
    p = tmp_path / "gateway.json"
    p.write_text(json.dumps(cfg))
    return p


def test_pinned_requests_do_not_set_the_fast_cost_ratio():
    res = replay(records(), Plan(threshold=1.0))  # everything classifier-routed moves to fast
    assert res["fast_cost_ratio"] == 0.1 and "--fast-cost-ratio" in res["fast_cost_from"]  # the default, said so


def test_fast_cost_from_the_configured_prices_shows_the_saving(tmp_path, capsys):
    log = tmp_path / "export.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records()))
    assert main(["--file", str(log), "--threshold", "1.0", "--config", str(config_file(tmp_path)), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    # 4 requests moved from reasoning to fast: 10x cheaper at the configured prices
    moved = 4 * (100 * 0.1 + 100 * 0.4) / 1e6
    pinned = 3 * (100 * 0.1 + 100 * 0.4) / 1e6
    assert res["replay"]["cost"] == pytest.approx(moved + pinned)
    assert res["logged"]["cost"] > 5 * res["replay"]["cost"]
    assert main(["--file", str(log), "--threshold", "1.0", "--config", str(config_file(tmp_path))]) == 0
    assert "fast model's configured price" in capsys.readouterr().out


def test_no_outcome_joined_says_why(tmp_path, capsys):
    log = tmp_path / "export.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records()))
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_text(json.dumps({"id": "q1", "prompt": "What is 2 + 2?", "fast": 1, "strong": 1}) + "\n")
    assert main(["--file", str(log), "--outcomes", str(outcomes)]) == 0
    out = capsys.readouterr().out
    assert "quality (n=0)" in out
    assert "no decision joined an outcome" in out and "decisions.store_prompt: true" in out
    # with prompts stored that begin no outcome's prompt, the reason changes
    stored = [rec(store_prompt=True, difficulty=0.6, prompt="something else entirely, not in the outcomes")]
    res = replay(stored, Plan(), None)
    res["outcomes"] = {"matched": 0, "always_fast": None, "always_strong": None}
    assert "none of the 1 stored prompts begins an outcome's prompt" in format_report(res, "x")


def test_an_artifact_with_no_embeddings_to_read_says_so(tmp_path, capsys):
    from router.learning.testing import write_artifact

    log = tmp_path / "export.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records()))
    art = write_artifact(tmp_path / "art")
    assert main(["--file", str(log), "--artifact", str(art)]) == 0
    out = capsys.readouterr().out
    assert f"--artifact re-scored 0 of {len(records())} records: none has a stored embedding" in out
    assert "decisions.store_embedding: true" in out
