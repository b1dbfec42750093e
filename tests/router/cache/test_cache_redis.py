"""Redis-only behaviour against a real redis-server: outages, reconnects and
replicas sharing one cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aredis

from router.cache import ResponseCache, build_cache
from router.cache.testing import RedisServer
from router.config import CacheSettings
from tests.router.cache_helpers import chat, completion, near, unit

pytestmark = pytest.mark.redis


@pytest.fixture
async def make(redis_url: str) -> AsyncIterator[Callable[..., ResponseCache]]:
    caches: list[ResponseCache] = []

    def factory(**kw: Any) -> ResponseCache:
        kw.setdefault("timeout_ms", 1000)  # behaviour, not timing: a shared CI box may stall
        cache = build_cache(CacheSettings(redis_url=redis_url, **kw))
        caches.append(cache)
        return cache

    yield factory
    for c in caches:
        await c.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def state(cache: ResponseCache) -> str:
    return str((await cache.ready())["state"])


async def timed(coro: Awaitable[Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = await coro
    return out, time.perf_counter() - t


async def test_redis_killed_then_back(make: Callable[..., ResponseCache], redis_server: RedisServer) -> None:
    rng = np.random.default_rng(1)
    cache = make(timeout_ms=200)
    v = unit(rng)
    await cache.put(chat("q"), v, completion("before"), None, "fast")
    assert (await cache.get(chat("q"), None)) is not None

    redis_server.kill()
    for _ in range(5):  # every call returns fast, never raises
        hit, took = await timed(cache.get(chat("q"), v))
        assert hit is None and took < 0.5  # fast: refused connections are not waited for
        _, took = await timed(cache.put(chat("other"), v, completion("x"), None, "fast"))
        assert took < 0.5
    info = await cache.ready()
    assert info["ok"] is False and info["state"] == "down" and info["last_error"]
    assert info["required"] is False

    redis_server.start()
    await eventually(lambda: _is(cache, "up"))
    # the restarted server is empty (no persistence): no stale semantic rows survive
    assert await cache.get(chat("q again"), near(v, 0.99, rng)) is None
    await cache.put(chat("q"), v, completion("after"), None, "fast")
    hit = await cache.get(chat("q"), None)
    assert hit is not None and hit.response["choices"][0]["message"]["content"] == "after"
    sem = await cache.get(chat("q again"), near(v, 0.99, rng))
    assert sem is not None and sem.kind == "semantic"
    info = await cache.ready()
    assert info["reconnects"] >= 1 and info["trips"] >= 1 and info["down_s_total"] > 0


async def _is(cache: ResponseCache, want: str) -> bool:
    return await state(cache) == want


async def test_redis_hung_times_out_then_recovers(make: Callable[..., ResponseCache], redis_server: RedisServer) -> None:
    cache = make(timeout_ms=50)
    await cache.put(chat("q"), None, completion("x"), None, "fast")
    redis_server.pause()
    try:
        for _ in range(3):  # three timeouts in a row trip the store (one could be a hiccup)
            hit, took = await timed(cache.get(chat("q"), None))
            assert hit is None and took < 0.5  # the 50 ms budget, plus a busy box's scheduling
        hit, took = await timed(cache.get(chat("q"), None))  # now bypassed without waiting
        assert hit is None and took < 0.04
        assert (await cache.ready())["state"] == "down"
    finally:
        redis_server.resume()
    await eventually(lambda: _is(cache, "up"))
    assert await cache.get(chat("q"), None) is not None


async def test_unreachable_at_start_then_connects(redis_server: RedisServer) -> None:
    server = RedisServer()  # not started yet
    cache = build_cache(CacheSettings(redis_url=server.url, timeout_ms=20))
    try:
        hit, took = await timed(cache.get(chat("q"), None))
        assert hit is None and took < 0.5
        assert (await cache.ready())["state"] == "down"
        server.start()
        await eventually(lambda: _is(cache, "up"))
        await cache.put(chat("q"), None, completion("x"), None, "fast")
        assert await cache.get(chat("q"), None) is not None
    finally:
        await cache.close()
        server.stop()


async def test_replicas_share_exact_and_semantic_entries(make: Callable[..., ResponseCache]) -> None:
    rng = np.random.default_rng(2)
    a, b = make(), make()
    assert (await a.ready())["vector_search"] == "local"  # Redis 7 without modules
    await b.ready()
    v = unit(rng)
    await a.put(chat("shared?"), v, completion("yes"), None, "fast")
    assert await b.get(chat("shared?"), None) is not None
    # b learns the vector from the stream it tails
    await eventually(lambda: _hit(b, chat("shared, right?"), near(v, 0.98, rng)), timeout=8)
    # invalidation on one replica reaches the other's index
    assert await a.invalidate("default", None) == 1
    assert await b.get(chat("shared?"), None) is None
    await eventually(lambda: _rows(b, 0), timeout=8)


async def _hit(cache: ResponseCache, req: Any, v: np.ndarray) -> bool:
    return await cache.get(req, v) is not None


async def _rows(cache: ResponseCache, n: int) -> bool:
    return (await cache.ready())["index_rows"] == n


async def test_new_replica_loads_existing_index(make: Callable[..., ResponseCache]) -> None:
    rng = np.random.default_rng(3)
    a = make()
    vs = [unit(rng) for _ in range(20)]
    for i, v in enumerate(vs):
        await a.put(chat(f"q{i}"), v, completion(str(i)), None, "fast")
    late = make()
    await late.ready()
    await eventually(lambda: _rows(late, 20), timeout=8)
    hit = await late.get(chat("q7 reworded"), near(vs[7], 0.97, rng))
    assert hit is not None and hit.response["choices"][0]["message"]["content"] == "7"


async def test_stale_index_row_is_dropped(make: Callable[..., ResponseCache], redis_url: str) -> None:
    rng = np.random.default_rng(4)
    cache = make()
    v = unit(rng)
    await cache.put(chat("q"), v, completion("x"), None, "fast")
    client = aredis.Redis.from_url(redis_url)
    try:  # the entry disappears behind the index's back (eviction by Redis maxmemory, say)
        keys = await client.keys("thinkgate:cache:e:*")
        assert len(keys) == 1
        await client.delete(*keys)
    finally:
        await client.aclose()
    assert await cache.get(chat("q again"), near(v, 0.99, rng)) is None
    assert (await cache.ready())["index_rows"] == 0


async def test_redis_entry_bound_evicts_in_redis(make: Callable[..., ResponseCache], redis_url: str) -> None:
    cache = make(max_entries=10)
    for i in range(25):
        await cache.put(chat(f"q{i}"), None, completion(str(i)), None, "fast")
    client = aredis.Redis.from_url(redis_url)
    try:
        assert len(await client.keys("thinkgate:cache:e:*")) == 10
        assert await client.zcard("thinkgate:cache:lru") == 10
    finally:
        await client.aclose()
    assert (await cache.ready())["evicted"] == 15


async def test_ready_redacts_password() -> None:
    from router.cache.redis_client import redact

    assert redact("redis://user:s3cret@h:6379/0") == "redis://user:***@h:6379/0"
    assert redact("redis://:s3cret@h/0") == "redis://:***@h/0"
    assert redact("redis://h:6379") == "redis://h:6379"


async def test_forced_redis_vector_search_falls_back_on_plain_redis(make: Callable[..., ResponseCache]) -> None:
    rng = np.random.default_rng(5)
    cache = make(vector_search="redis")
    info = await cache.ready()
    assert info["state"] == "up" and info["vector_search"] == "local"
    assert cache.state == "up"
    v = unit(rng)
    await cache.put(chat("q"), v, completion("x"), None, "fast")
    assert (await cache.get(chat("q!"), near(v, 0.99, rng))) is not None


async def test_damaged_stream_events_are_skipped(make: Callable[..., ResponseCache], redis_url: str) -> None:
    rng = np.random.default_rng(6)
    a, b = make(), make()
    await b.ready()
    client = aredis.Redis.from_url(redis_url)
    try:
        await client.xadd("thinkgate:cache:log", {"op": "add", "m": "not json"})
        await client.xadd("thinkgate:cache:log", {"op": "add"})
    finally:
        await client.aclose()
    v = unit(rng)
    await a.put(chat("q"), v, completion("x"), None, "fast")
    await eventually(lambda: _hit(b, chat("q?"), near(v, 0.98, rng)), timeout=8)
    assert (await b.ready())["state"] == "up"
