from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from router.config import DecisionLogSettings
from router.decisions.log import RedisDecisionLog, to_record
from router.decisions.replay import OutcomeIndex, Plan, main, replay
from router.types import Decision


def rec(**kw: Any) -> dict[str, Any]:
    base = {"route": "fast", "reason": "classifier", "cache": "miss", "threshold": 0.5}
    return to_record(Decision(**{**base, **kw}), DecisionLogSettings(store_prompt=True))  # type: ignore[arg-type]


def sample() -> list[dict[str, Any]]:
    return [
        rec(difficulty=0.2, confidence=0.9, selfref_threshold=0.5, cost=0.1, baseline_cost=1.0, prompt="what is two plus two"),
        rec(difficulty=0.4, confidence=0.55, selfref_threshold=0.5, cost=0.1, baseline_cost=1.0, prompt="name a colour of the sky"),
        rec(difficulty=0.45, confidence=0.3, selfref_threshold=0.5, escalated=True, route="reasoning", reason="escalated",
            cost=0.9, baseline_cost=1.0, prompt="who wrote the iliad originally"),  # fmt: skip
        rec(difficulty=0.7, route="reasoning", cost=0.8, baseline_cost=1.0, prompt="prove there are infinitely many primes"),
        rec(difficulty=0.9, route="reasoning", cost=0.9, baseline_cost=1.0, prompt="derive the quadratic formula please"),
        rec(route="cache", reason="cache", cache="exact", baseline_cost=1.0),
        rec(difficulty=None, route="reasoning", reason="forced", cost=1.0, baseline_cost=1.0),
    ]


def test_same_threshold_reproduces_the_log() -> None:
    res = replay(sample(), Plan())
    assert res["changed"] == 0
    assert res["replay"]["routes"] == res["logged"]["routes"]
    assert res["replay"]["cost"] == pytest.approx(res["logged"]["cost"])
    assert res["kept_as_logged"] == {"cache": 1, "no_difficulty": 1}


def test_higher_threshold_sends_fewer_to_reasoning() -> None:
    res = replay(sample(), Plan(threshold=0.8))
    lg, rp = res["logged"], res["replay"]
    assert lg["routes"]["reasoning"] == 4 and rp["routes"]["reasoning"] == 3  # 0.7 moves to fast
    assert res["unknown_confidence"] == 1
    # fast cost of the moved request: baseline x median(fast cost / baseline) = 1.0 x 0.1
    assert rp["cost"] == pytest.approx(lg["cost"] - 0.8 + 0.1)
    assert rp["baseline_cost"] == lg["baseline_cost"] == 7.0


def test_lower_threshold_and_selfref_threshold() -> None:
    res = replay(sample(), Plan(threshold=0.1))
    assert res["replay"]["routes"]["fast"] == 0 and res["replay"]["escalated"] == 0
    res = replay(sample(), Plan(selfref_threshold=0.6))  # 0.55 now escalates too
    assert res["replay"]["escalated"] == 2 and res["changed"] == 1
    res = replay(sample(), Plan(selfref_threshold=0.2))  # nothing escalates
    assert res["replay"]["escalated"] == 0
    assert res["replay"]["cost"] < res["logged"]["cost"]


def test_quality_from_outcomes_joined_by_prompt_and_id() -> None:
    recs = sample()
    recs[0]["prompt_id"] = "q0"
    outcomes = [
        {"id": "q0", "prompt": "unrelated text", "fast": 1.0, "strong": 1.0},
        {"id": "q1", "prompt": [{"role": "user", "content": "Name a colour of the sky"}], "fast": 0.0, "strong": 1.0},
        {"id": "q2", "prompt": "Who wrote   the Iliad originally?", "fast": 0.0, "strong": 1.0},
        {"id": "q3", "prompt": "Prove there are infinitely many primes.", "fast": 0.0, "strong": 1.0},
    ]
    idx = OutcomeIndex(outcomes)
    res = replay(recs, Plan(), idx)
    assert res["outcomes"]["matched"] == 4
    assert res["logged"]["quality"] == pytest.approx((1 + 0 + 1 + 1) / 4)
    res = replay(recs, Plan(threshold=0.95, selfref_threshold=0.0), idx)  # everything fast, no escalation
    assert res["replay"]["quality"] == pytest.approx(0.25)
    assert res["outcomes"]["always_fast"] == pytest.approx(0.25) and res["outcomes"]["always_strong"] == 1.0


def _write(path: Path, recs: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + "not json\n")


def test_cli_table_json_and_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "decisions.jsonl"
    _write(f, sample())
    assert main(["--file", str(f), "--threshold", "0.8", "--sweep"]) == 0
    out = capsys.readouterr().out
    assert "reasoning share" in out and "57.1%" in out and "42.9%" in out  # 4/7 logged, 3/7 replayed
    assert "1 unreadable lines skipped" in out and "0.90" in out
    assert main(["--file", str(f), "--threshold", "0.8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["replay"]["routes"]["reasoning"] == 3 and data["unreadable"] == 1


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--file", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["--file", str(tmp_path / "x"), "--threshold", "1.5"]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["--file", str(empty)]) == 1
    with pytest.raises(SystemExit):
        main([])  # a source is required


@pytest.mark.redis
async def test_cli_reads_the_redis_stream(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    log = RedisDecisionLog(redis_url, DecisionLogSettings(stream_key="tg-test:replay"))
    for r in sample():
        d = Decision(**{k: v for k, v in r.items() if k != "deer"})
        await log.append(d)
    await log.close()
    assert main(["--from-redis", redis_url, "--key", "tg-test:replay", "--threshold", "0.8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["records"] == 7 and data["replay"]["routes"]["reasoning"] == 3


def test_artifact_rescoring_needs_as_wide_an_embedding_as_it_reads() -> None:
    from policies.difficulty import DifficultyClassifier

    clf = DifficultyClassifier.load("default")
    records = sample()
    for r in records[:2]:
        r["embedding"] = [0.05] * 384  # the log keeps the sentence embedding only
    assert clf.embedding_dim > 384  # the default reads the layer means too
    res = replay(records, Plan(classifier=clf))
    assert res["difficulty_rescored"] == 0 and res["difficulty_not_rescorable"] == 2  # logged P kept, and said so
    assert "kept their logged difficulty" in "\n".join(format_report_lines(res))
    # a sentence-only artifact (the first 384 values) re-scores them
    narrow = DifficultyClassifier(clf.meta, {**_weights("default"), **_narrow(clf)})
    assert replay(records, Plan(classifier=narrow))["difficulty_rescored"] == 2


def format_report_lines(res: dict[str, Any]) -> list[str]:
    from router.decisions.replay import format_report

    return format_report(res, "test").splitlines()


def _weights(name: str) -> dict[str, Any]:
    import numpy as np

    from policies.difficulty import resolve

    with np.load(resolve(name) / "weights.npz") as z:
        return {k: z[k] for k in z.files}


def _narrow(clf: Any) -> dict[str, Any]:
    w = _weights("default")
    return {k: w[k][:384] for k in ("coef_emb", "emb_mean", "emb_scale")}
