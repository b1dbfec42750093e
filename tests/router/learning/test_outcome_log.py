"""The outcome log's two backends (a real redis-server for the stream) and
calibrate reading them back as training data."""

from __future__ import annotations

import json

import pytest

from calibrate.commands import load_outcomes
from calibrate.outcome_log import is_log, read_log
from calibrate.outcomes import OutcomeError
from router import config
from router.learning.outcome_log import JsonlOutcomeLog, RedisOutcomeLog, build_outcome_log


def rec(i: int, tenant: str = "acme", prompt: bool = True) -> dict:
    r = {"id": f"req-{i}", "fast": 0.0, "strong": 1.0, "tenant": tenant, "source": "shadow", "route": "fast",
         "difficulty": 0.3, "threshold": 0.5, "artifact": "a@1", "judge_version": "pairwise-both-orders/1", "ts": 1.0 + i}
    if prompt:
        r["prompt"] = f"question {i}"
    else:
        r["prompt_sha256"] = "0" * 64
    return r


async def test_jsonl_appends_counts_and_reads_the_tail_newest_first(tmp_path):
    log = JsonlOutcomeLog(tmp_path / "sub" / "o.jsonl")
    assert await log.count() == 0 and await log.recent(5) == []
    for i in range(400):  # ~100 kB: the tail is read in more than one block
        await log.append(rec(i, tenant="acme" if i % 3 else "zeta"))
    assert await log.count() == 400
    recent = await log.recent(4)
    assert [r["id"] for r in recent] == ["req-399", "req-398", "req-397", "req-396"]
    zeta = await log.recent(3, tenant="zeta")
    assert [r["id"] for r in zeta] == ["req-399", "req-396", "req-393"]
    with open(log.path, "a") as fh:
        fh.write('{"id": "cut mid-wri')  # a crash mid-write: the reader skips the torn line
    assert (await log.recent(1))[0]["id"] == "req-399"
    await log.append(rec(400))  # starts on a line of its own
    assert [r["id"] for r in await log.recent(2)] == ["req-400", "req-399"]
    assert JsonlOutcomeLog(log.path)._count_lines() == 402


async def test_redis_stream_is_bounded_and_read_newest_first(redis_url):
    log = RedisOutcomeLog(redis_url, "t:outcomes", max_records=100, timeout_ms=1000)
    try:
        for i in range(500):
            await log.append(rec(i))
        n = await log.count()
        assert 100 <= n < 500  # MAXLEN ~ trims in whole macro-nodes
        assert [r["id"] for r in await log.recent(2)] == ["req-499", "req-498"]
    finally:
        await log.close()


def test_build_picks_redis_when_a_url_is_known(tmp_path):
    base = {"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake"}}}
    s = config.from_dict({**base, "learning": {"outcome_log": {"path": str(tmp_path / "o.jsonl")}}})
    assert build_outcome_log(s).kind == "jsonl"
    s = config.from_dict({**base, "cache": {"redis_url": "redis://127.0.0.1:1/0"}})
    assert build_outcome_log(s).kind == "redis"
    s = config.from_dict({**base, "learning": {"outcome_log": {"backend": "redis"}}})
    with pytest.raises(ValueError, match="no redis_url"):
        build_outcome_log(s)
    with pytest.raises(config.ConfigError, match="learning.judge"):
        config.from_dict({**base, "learning": {"judge": "nobody"}})


def test_calibrate_reads_a_jsonl_log_skipping_records_without_prompt_text(tmp_path, capsys):
    path = tmp_path / "o.jsonl"
    rows = [rec(0), rec(1, prompt=False), rec(2, tenant="zeta"), rec(0)]  # a duplicate id too
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert is_log(str(path))
    o = read_log(str(path))
    assert o.ids == ["req-0", "req-2"] and o.prompts == ["question 0", "question 2"] and o.strong == [1.0, 1.0]
    assert "skipped 1 without prompt text" in capsys.readouterr().err
    assert load_outcomes([str(path)], tenant="zeta").ids == ["req-2"]
    with pytest.raises(OutcomeError, match="no usable outcomes"):
        read_log(str(path), tenant="nobody")


async def test_calibrate_reads_the_redis_stream(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline()
    for i in range(7001):  # more than one page, written as the gateway writes them
        pipe.xadd("t:o", {"r": json.dumps(rec(i)).encode()})
    pipe.execute()
    client.close()
    o = read_log(f"{redis_url}?stream=t:o")
    assert len(o) == 7001 and o.ids[0] == "req-0" and o.ids[-1] == "req-7000"
    assert o.extra[0]["tenant"] == "acme" and o.extra[0]["source"] == "shadow"
    with pytest.raises(OutcomeError, match="no usable outcomes"):
        read_log(f"{redis_url}?stream=t:empty")


def _signal_log(path, n: int = 160) -> None:
    """A log whose hard prompts (long arithmetic) need the strong model: a learnable signal."""
    import random

    rng = random.Random(3)
    rows = []
    for i in range(n):
        hard = i % 2 == 0
        prompt = (f"Compute {rng.randint(100, 999)} * {rng.randint(100, 999)} - {rng.randint(10, 99)} step by step"
                  if hard else f"Say hello to {rng.choice(['Ann', 'Bo', 'Cy', 'Di'])} politely")  # fmt: skip
        r = rec(i)
        r.update(prompt=prompt, fast=0.0 if hard and rng.random() < 0.8 else 1.0, strong=1.0)
        rows.append(r)
    rows.append(rec(n, prompt=False))  # logged with store_prompt off: skipped by training
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow
def test_calibrate_train_and_evaluate_read_the_outcome_log(tmp_path, capsys):
    from calibrate.cli import main

    log = tmp_path / "outcomes.jsonl"
    _signal_log(log)
    art = tmp_path / "art"
    assert main(["train", "--outcomes", str(log), "--out", str(art), "--cv", "0", "--quiet", "--embedder", "hash",
                 "--no-cache", "--target-share", "0.5"]) == 0  # fmt: skip
    meta = json.loads((art / "meta.json").read_text())
    assert meta["training_data"]["n"] == 160
    capsys.readouterr()
    assert main(["evaluate", "--outcomes", str(log), "--cv", "3", "--json", "--quiet", "--embedder", "hash", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = out.get("summary", out)
    assert summary["n"] == 160 and summary["apgr"] > 0.6  # the signal is found out of fold
