"""router.cache.conversations: the in-process LRU+TTL store, and a dead Redis degrading."""

from __future__ import annotations

import time

from router.cache.conversations import MemoryRoutes, RedisRoutes, build_route_store
from router.config import RoutingSettings


async def test_memory_routes_expire_and_stay_bounded():
    now = [0.0]
    store = MemoryRoutes(ttl_s=10, max_entries=2, clock=lambda: now[0])
    await store.put("a", "fast")
    await store.put("b", "reasoning")
    assert await store.get("a") == "fast"  # a is now the most recent
    await store.put("c", "fast")  # evicts b, the least recently used
    assert await store.get("b") is None and await store.get("a") == "fast"
    now[0] = 11
    assert await store.get("a") is None and await store.get("c") is None


def test_the_store_follows_the_settings():
    assert build_route_store(RoutingSettings(), None) is None
    assert isinstance(build_route_store(RoutingSettings(conversation="sticky"), None), MemoryRoutes)
    s = build_route_store(RoutingSettings(conversation="monotone"), "redis://127.0.0.1:1/0")
    assert isinstance(s, RedisRoutes) and s.key("abc") == "thinkgate:conv:{abc}:route"


async def test_a_dead_redis_returns_nothing_fast_and_is_then_skipped():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisRoutes(f"redis://127.0.0.1:{port}/0", ttl_s=60, timeout_ms=200, namespace="t")
    t = time.perf_counter()
    assert await store.get("x") is None
    await store.put("x", "fast")  # skipped: the store is marked down
    assert time.perf_counter() - t < 1.0
    await store.close()
