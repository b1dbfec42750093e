"""The Responses API's store on a real redis-server: TTL, tenant scope, two
replicas sharing it, and a Redis outage that degrades instead of failing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis

from router.app import create_app
from router.cache.stored_responses import RedisResponseStore, StoreUnavailable, build_response_store
from router.cache.testing import RedisServer
from router.upstreams.fake import FakeUpstream
from tests.router.test_app import settings

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisResponseStore]:
    s = build_response_store(redis_url, ttl_s=120, max_entries=10, timeout_ms=300, namespace="tgtest")
    assert isinstance(s, RedisResponseStore)
    yield s
    await s.close()


async def test_round_trip_ttl_and_tenant_scope(store: RedisResponseStore, redis_url: str) -> None:
    record = {"response": {"id": "resp_1", "output": [{"type": "message", "text": "héllo"}]}, "history": []}
    await store.put("team:a", "resp_1", record)
    assert await store.get("team:a", "resp_1") == record
    assert await store.get("team:b", "resp_1") is None
    r = aredis.from_url(redis_url)
    try:
        keys = [k.decode() async for k in r.scan_iter("tgtest:responses:*")]
        assert keys == [f"tgtest:responses:{'team:a'.encode().hex()}:resp_1"]
        assert 100 < await r.ttl(keys[0]) <= 120
    finally:
        await r.aclose()
    assert await store.delete("team:b", "resp_1") is False
    assert await store.delete("team:a", "resp_1") is True
    assert await store.get("team:a", "resp_1") is None
    assert (await store.ready())["ok"] is True


def _app(redis_url: str) -> tuple[Any, FakeUpstream]:
    fast = FakeUpstream("fast", "fast-model")
    s = settings(responses={"redis_url": redis_url, "timeout_ms": 300})
    store = build_response_store(redis_url, ttl_s=60, max_entries=10, timeout_ms=300, namespace="thinkgate")
    app = create_app(
        s, upstreams={"fast": fast, "reasoning": FakeUpstream("reasoning", "reasoning-model")}, response_store=store
    )
    return app, fast


async def test_two_replicas_share_the_store(redis_url: str) -> None:
    (app_a, _), (app_b, fast_b) = _app(redis_url), _app(redis_url)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app_a), base_url="http://a") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app_b), base_url="http://b") as b,
    ):
        first = (await a.post("/v1/responses", json={"model": "auto", "input": "one"})).json()
        got = await b.get(f"/v1/responses/{first['id']}")
        assert got.status_code == 200 and got.json() == first
        second = await b.post(
            "/v1/responses", json={"model": "auto", "input": "two", "previous_response_id": first["id"]}
        )
        assert second.status_code == 200
        assert fast_b.calls[-1]["messages"] == [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "echo: one"},
            {"role": "user", "content": "two"},
        ]
        assert (await a.delete(f"/v1/responses/{first['id']}")).status_code == 200
        assert (await b.get(f"/v1/responses/{first['id']}")).status_code == 404


async def test_redis_down_degrades_then_recovers(redis_url: str, redis_server: RedisServer) -> None:
    app, _ = _app(redis_url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        first = (await c.post("/v1/responses", json={"model": "auto", "input": "one"})).json()
        redis_server.pause()  # hung: connections stay open, nothing answers
        try:
            t = time.perf_counter()
            r = await c.post("/v1/responses", json={"model": "auto", "input": "still served"})
            assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == "echo: still served"
            r = await c.post(
                "/v1/responses", json={"model": "auto", "input": "two", "previous_response_id": first["id"]}
            )
            assert r.status_code == 503 and r.json()["error"]["code"] == "response_store_unavailable"
            assert "did not answer" in r.json()["error"]["message"]
            assert time.perf_counter() - t < 5  # bounded by timeout_ms, not a hang
            ready = (await c.get("/readyz")).json()
            assert ready["status"] == "ready" and "responses" in ready["degraded"]
        finally:
            redis_server.resume()
        redis_server.kill()  # and down: connection refused
        assert (await c.post("/v1/responses", json={"model": "auto", "input": "x"})).status_code == 200
        assert (await c.get(f"/v1/responses/{first['id']}")).status_code == 503
        probe = RedisResponseStore(redis_url, timeout_ms=300)
        with pytest.raises(StoreUnavailable):
            await probe.get("default", first["id"])
        await probe.close()
        redis_server.start()
        again = await c.post("/v1/responses", json={"model": "auto", "input": "three"})
        assert again.status_code == 200
        assert (await c.get(f"/v1/responses/{again.json()['id']}")).status_code == 200


async def test_build_app_puts_the_store_on_the_configured_redis(redis_url: str) -> None:
    from router import config
    from router.build import build_app

    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model"}, "reasoning": {"provider": "fake", "model": "r", "reasoning": True}},
        "classifier": {"enabled": False},
        "cache": {"redis_url": redis_url},
    })  # fmt: skip
    app = build_app(s, env={})
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
            made = (await c.post("/v1/responses", json={"model": "auto", "input": "x"})).json()
            assert (await c.get("/readyz")).json()["checks"]["responses"]["backend"] == "redis"
    r = aredis.from_url(redis_url)
    try:
        assert await r.exists(f"thinkgate:responses:{'default'.encode().hex()}:{made['id']}") == 1
    finally:
        await r.aclose()
