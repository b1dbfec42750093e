from __future__ import annotations

import asyncio
import json
import time

import pytest

from router.config import DecisionLogSettings, from_dict
from router.dashboard.demo import sample_decisions
from router.decisions.log import MemoryDecisionLog, RedisDecisionLog, build_log, percentile, summarize, to_record
from router.types import Decision, DeerStats


def _d(**kw: object) -> Decision:
    return Decision(**kw)  # type: ignore[arg-type]


# -- records -------------------------------------------------------------------


def test_record_drops_prompt_and_embedding_unless_enabled() -> None:
    d = _d(prompt="x" * 500, embedding=[0.123456789] * 4, deer=DeerStats(probes=2, reason="confident"))
    rec = to_record(d, DecisionLogSettings())
    assert rec["prompt"] is None and rec["embedding"] is None
    assert rec["deer"]["probes"] == 2
    json.dumps(rec)  # JSON-ready
    rec = to_record(d, DecisionLogSettings(store_prompt=True, prompt_chars=10, store_embedding=True))
    assert rec["prompt"] == "x" * 10
    assert rec["embedding"] == [0.12346] * 4


# -- memory ring -----------------------------------------------------------------


async def test_memory_ring_is_bounded_and_newest_first() -> None:
    log = MemoryDecisionLog(DecisionLogSettings(max_records=10))
    ids = []
    for i in range(25):
        d = _d(created=1000 + i)
        ids.append(d.id)
        await log.append(d)
    assert len(log) == 10
    recent = await log.recent(100)
    assert [r["id"] for r in recent] == ids[::-1][:10]
    assert await log.get(ids[0]) is None  # trimmed
    assert (await log.get(ids[-1]))["id"] == ids[-1]
    assert (await log.ready())["records"] == 10


async def test_memory_filters() -> None:
    log = MemoryDecisionLog()
    await log.append(_d(tenant="a", route="fast", cache="miss"))
    await log.append(_d(tenant="b", route="reasoning", escalated=True, cache="miss"))
    await log.append(_d(tenant="a", route="cache", cache="exact"))
    await log.append(_d(tenant="b", route="cache", cache="semantic", similarity=0.97))
    assert len(await log.recent(10, tenant="a")) == 2
    assert [r["route"] for r in await log.recent(10, escalated=True)] == ["reasoning"]
    assert len(await log.recent(10, escalated="false")) == 3
    assert len(await log.recent(10, cache="hit")) == 2
    assert [r["cache"] for r in await log.recent(10, cache="semantic")] == ["semantic"]
    assert len(await log.recent(10, route="cache", tenant="b")) == 1
    assert len(await log.recent(1)) == 1
    with pytest.raises(ValueError):
        await log.recent(10, escalated="maybe")


async def test_append_never_raises_on_a_bad_record() -> None:
    log = MemoryDecisionLog()
    bad = _d()
    bad.embedding = object()  # type: ignore[assignment]
    await log.append(bad)  # logged and dropped, no exception


def test_build_log_picks_backend() -> None:
    base = {"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake"}}}
    assert isinstance(build_log(from_dict(base)), MemoryDecisionLog)
    s = from_dict({**base, "cache": {"redis_url": "redis://127.0.0.1:1/0"}})
    assert isinstance(build_log(s), RedisDecisionLog)  # falls back to the cache's Redis
    s = from_dict({**base, "cache": {"redis_url": "redis://127.0.0.1:1/0"}, "decisions": {"backend": "memory"}})
    assert isinstance(build_log(s), MemoryDecisionLog)
    assert isinstance(build_log(DecisionLogSettings(redis_url="redis://127.0.0.1:1/0")), RedisDecisionLog)
    with pytest.raises(ValueError):
        build_log(DecisionLogSettings(backend="redis"))


# -- summary -----------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 50) == 50.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def test_summary_numbers() -> None:
    now = 10_000.0
    recs = [
        _d(created=now - 50, route="fast", cache="miss", difficulty=0.1, threshold=0.5, confidence=0.9, cost=0.1, baseline_cost=1.0, total_ms=100),
        _d(created=now - 40, route="reasoning", escalated=True, reason="escalated", cache="miss", difficulty=0.3, threshold=0.5,
           confidence=0.2, cost=1.1, baseline_cost=1.0, total_ms=900,
           deer=DeerStats(probes=3, exit_step=2, reason="confident", thinking_tokens=100, probe_tokens=30)),
        _d(created=now - 30, route="reasoning", cache="miss", difficulty=0.8, threshold=0.5, cost=1.0, baseline_cost=1.0, total_ms=1000,
           deer=DeerStats(probes=5, reason="natural_end", thinking_tokens=400, probe_tokens=50)),
        _d(created=now - 20, route="cache", cache="exact", baseline_cost=1.0, total_ms=1),
        _d(created=now - 10, route="fast", cache="miss", difficulty=0.45, threshold=0.5, cost=0.1, baseline_cost=1.0, status=504,
           error="UpstreamTimeout: slow"),
    ]
    s = summarize([to_record(d) for d in recs], now=now)
    assert s["total"] == 5
    assert s["routes"] == {"fast": 2, "reasoning": 2, "cache": 1, "none": 0}
    assert s["share"]["cache"] == pytest.approx(0.2)
    assert s["escalation"] == {"eligible": 3, "escalated": 1, "rate": pytest.approx(1 / 3), "confidence_p50": 0.2}
    assert s["cache"]["lookups"] == 5 and s["cache"]["exact"] == 1 and s["cache"]["hit_rate"] == pytest.approx(0.2)
    assert s["difficulty"]["n"] == 4 and sum(s["difficulty"]["bins"]) == 4
    assert s["difficulty"]["bins"][2] == 1 and s["difficulty"]["bins"][16] == 1  # 0.1 and 0.8 in 20 bins
    assert s["difficulty"]["threshold"] == 0.5 and s["difficulty"]["above"] == 1
    assert s["deer"]["requests"] == 2 and s["deer"]["early_exits"] == 1 and s["deer"]["probes"] == 8
    assert s["deer"]["saved_tokens_est"] == 300.0  # full run used 400, the early exit 100
    assert s["errors"]["total"] == 1 and s["errors"]["kinds"] == {"UpstreamTimeout": 1}
    assert s["latency"]["fast"]["n"] == 1 and s["latency"]["fast"]["p50"] == 100
    assert s["cost"]["actual"] == pytest.approx(2.3) and s["cost"]["baseline"] == pytest.approx(5.0)
    tl = s["timeline"]
    assert sum(b["fast"] + b["reasoning"] + b["cache"] for b in tl["buckets"]) == 5
    assert tl["buckets"][-1]["t"] <= now < tl["buckets"][-1]["t"] + tl["bucket_s"]


def test_summary_empty() -> None:
    s = summarize([])
    assert s["total"] == 0 and s["timeline"]["buckets"] == [] and s["escalation"]["rate"] is None
    assert s["deer"]["saved_tokens_est"] is None and s["cost"]["saved_pct"] is None


async def test_memory_summary_window_and_since() -> None:
    log = MemoryDecisionLog()
    for d in sample_decisions(50, now=time.time()):
        await log.append(d)
    s = await log.summary()
    assert s["total"] == 50 and s["log"]["backend"] == "memory"
    assert (await log.summary(window=10))["total"] == 10


# -- Redis stream ---------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_log_roundtrip_and_bound(redis_url: str) -> None:
    settings = DecisionLogSettings(max_records=100, stream_key="tg-test:decisions")
    log = RedisDecisionLog(redis_url, settings)
    try:
        ds = sample_decisions(300)
        for d in ds:
            await log.append(d)
        info = await log.ready()
        assert info["ok"] and info["backend"] == "redis"
        assert 100 <= info["records"] < 300  # MAXLEN ~ trims approximately
        recent = await log.recent(20)
        assert [r["id"] for r in recent] == [d.id for d in ds[::-1][:20]]
        fast = await log.recent(1000, route="fast")
        assert fast and all(r["route"] == "fast" for r in fast)
        esc = await log.recent(5, escalated=True)
        assert all(r["escalated"] for r in esc)
        # a second process (no local ring) reads the same stream, get() scans it
        other = RedisDecisionLog(redis_url, settings)
        try:
            assert (await other.get(ds[-5].id))["id"] == ds[-5].id
            assert await other.get("req-missing") is None
            s = await other.summary()
            assert s["total"] == info["records"] and s["log"]["backend"] == "redis"
        finally:
            await other.close()
    finally:
        await log.close()


@pytest.mark.redis
async def test_redis_down_degrades_to_local_ring_and_recovers(redis_server, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    settings = DecisionLogSettings(stream_key="tg-test:degrade", retry_s=0.2, timeout_ms=200)
    log = RedisDecisionLog(redis_url, settings)
    try:
        first = _d(tenant="before")
        await log.append(first)
        redis_server.kill()
        down = [_d(tenant="during") for _ in range(3)]
        t = time.perf_counter()
        for d in down:
            await log.append(d)  # must not raise
        assert time.perf_counter() - t < 2.0
        info = await log.ready()
        assert info["ok"] is False and info["degraded"] and info["fallback"] == "local ring"
        # reads keep working from the local ring
        assert [r["tenant"] for r in await log.recent(10)][:3] == ["during"] * 3
        assert (await log.get(down[0].id))["id"] == down[0].id
        assert (await log.summary())["total"] == 4
        # Redis comes back (empty: no persistence); parked records are flushed
        redis_server.start()
        await asyncio.sleep(0.25)
        after = _d(tenant="after")
        await log.append(after)
        info = await log.ready()
        assert info["ok"] and info["records"] == 4  # 3 parked + 1 new
        assert [r["tenant"] for r in await log.recent(10)] == ["after", "during", "during", "during"]
    finally:
        await log.close()


@pytest.mark.redis
async def test_redis_hung_server_times_out(redis_server, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    log = RedisDecisionLog(redis_url, DecisionLogSettings(stream_key="tg-test:hung", timeout_ms=50, retry_s=60))
    try:
        await log.append(_d())  # connect while healthy
        redis_server.pause()
        t = time.perf_counter()
        await log.append(_d())
        await log.append(_d())  # while marked down: no Redis call at all
        assert time.perf_counter() - t < 0.5
        assert (await log.ready())["degraded"]
        assert len(await log.recent(10)) == 3
    finally:
        redis_server.resume()
        await log.close()


async def test_redis_unreachable_from_the_start() -> None:
    log = RedisDecisionLog("redis://127.0.0.1:1/0", DecisionLogSettings(timeout_ms=100))
    try:
        d = _d()
        await log.append(d)
        assert (await log.get(d.id))["id"] == d.id
        assert len(await log.recent(5)) == 1
        info = await log.ready()
        assert info["ok"] is False and "error" in info
    finally:
        await log.close()
