"""The cache through the HTTP app: FakeUpstream behind `create_app`, the cache on
a real redis-server (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.middleware import Middleware

from router import config, errors
from router.app import create_app
from router.cache import ResponseCache, build_cache
from router.cache import admin as cache_admin
from router.cache.testing import RedisServer
from router.types import Caller
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeReply, FakeUpstream
from tests.router.cache_helpers import near, unit

redis = pytest.mark.redis  # the tests that need the real server


def settings() -> config.Settings:
    return config.from_dict(
        {
            "models": {
                "fast": {"provider": "fake", "model": "fast-model"},
                "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True},
            },
            "routes": {"auto": {}, "pinned": {"pin": "reasoning"}},
            "selfref": {"enabled": False},
        }
    )


class TableEmbedder:
    """Embeds by the last user turn through a fixed table (unknown text: random)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.rng = np.random.default_rng(0)

    async def embed(self, messages: list[dict[str, Any]], then: Any = None) -> Any:
        text = str(messages[-1]["content"])
        v = self.table.get(text, unit(self.rng))
        return v if then is None else (v, then(v))


class BreaksMidStream(FakeUpstream):
    """Streams two chunks, then fails: the answer is incomplete."""

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        n = 0
        async for chunk in super().stream(body, ctx):
            yield chunk
            n += 1
            if n == 2:
                raise errors.UpstreamUnavailable("connection reset mid-stream", upstream=self.name)


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[ResponseCache]:
    c = build_cache(config.CacheSettings(redis_url=redis_url, timeout_ms=1000))
    await c.ready()
    yield c
    await c.close()


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")


def ask(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "pinned", "messages": [{"role": "user", "content": text}], "temperature": 0, **kw}


async def stored(cache: ResponseCache, n: int) -> None:
    deadline = time.monotonic() + 3
    while cache.stats["stored"] < n:  # the pipeline stores after replying
        assert time.monotonic() < deadline, cache.stats
        await asyncio.sleep(0.01)


def events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


@redis
async def test_exact_hit_through_http(cache: ResponseCache) -> None:
    up = FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="6*7"))
    app = create_app(settings(), upstreams={"fast": FakeUpstream("fast"), "reasoning": up}, cache=cache)
    async with client_for(app) as client:
        first = await client.post("/v1/chat/completions", json=ask("6*7?"))
        assert first.status_code == 200 and first.headers["x-thinkgate-cache"] == "miss"
        await stored(cache, 1)
        again = await client.post("/v1/chat/completions", json=ask("6*7?"))
        assert again.headers["x-thinkgate-cache"] == "exact"
        assert again.headers["x-thinkgate-route"] == "cache"
        assert again.json()["choices"] == first.json()["choices"]
        assert again.json()["choices"][0]["message"]["reasoning_content"] == "6*7"
        assert len(up.calls) == 1
        sampled = await client.post("/v1/chat/completions", json=ask("6*7?", temperature=0.9))
        assert sampled.headers["x-thinkgate-cache"] == "miss" and len(up.calls) == 2
        fresh = await client.post(
            "/v1/chat/completions", json=ask("6*7?"), headers={"x-thinkgate-cache-control": "no-cache"}
        )
        assert fresh.headers["x-thinkgate-cache"] == "miss" and len(up.calls) == 3


@redis
async def test_streaming_replay_is_identical(cache: ResponseCache) -> None:
    up = FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("The answer is 42.", reasoning="Six sevens."))
    app = create_app(settings(), upstreams={"fast": FakeUpstream("fast"), "reasoning": up}, cache=cache)
    async with client_for(app) as client:
        first = await client.post("/v1/chat/completions", json=ask("6*7?", stream=True))
        assert first.status_code == 200 and first.headers["x-thinkgate-cache"] == "miss"
        await stored(cache, 1)
        again = await client.post("/v1/chat/completions", json=ask("6*7?", stream=True))
        assert again.headers["x-thinkgate-cache"] == "exact"
        assert events(again.text) == events(first.text)
        assert events(again.text)[-1] == "[DONE]"
        assert any("reasoning_content" in e for e in events(again.text))
        assert len(up.calls) == 1
        # a non-streaming client gets the same answer from the streamed entry
        plain = await client.post("/v1/chat/completions", json=ask("6*7?"))
        assert plain.headers["x-thinkgate-cache"] == "exact"
        message = plain.json()["choices"][0]["message"]
        assert message["content"] == "The answer is 42." and message["reasoning_content"] == "Six sevens."


@redis
async def test_partial_stream_is_not_stored(cache: ResponseCache) -> None:
    up = BreaksMidStream("reasoning", "reasoning-model", lambda b: FakeReply("one two three four five"))
    app = create_app(settings(), upstreams={"fast": BreaksMidStream("fast"), "reasoning": up}, cache=cache)
    async with client_for(app) as client:
        r = await client.post("/v1/chat/completions", json=ask("count", stream=True))
        assert r.status_code == 200  # headers went out before the failure
        await asyncio.sleep(0.1)
        again = await client.post("/v1/chat/completions", json=ask("count", stream=True))
        assert again.headers["x-thinkgate-cache"] == "miss"
    assert cache.stats["stored"] == 0


@redis
async def test_semantic_hit_through_http_with_similarity_header(cache: ResponseCache) -> None:
    rng = np.random.default_rng(3)
    v = unit(rng)
    embedder = TableEmbedder({"How do I reverse a list?": v, "how to reverse a list": near(v, 0.97, rng)})
    up = FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("lst[::-1]"))
    app = create_app(settings(), upstreams={"fast": FakeUpstream("fast"), "reasoning": up}, cache=cache, embedder=embedder)
    async with client_for(app) as client:
        await client.post("/v1/chat/completions", json=ask("How do I reverse a list?"))
        await stored(cache, 1)
        r = await client.post("/v1/chat/completions", json=ask("how to reverse a list"))
        assert r.headers["x-thinkgate-cache"] == "semantic"
        assert float(r.headers["x-thinkgate-similarity"]) == pytest.approx(0.97, abs=1e-3)
        assert r.json()["choices"][0]["message"]["content"] == "lst[::-1]"
        assert len(up.calls) == 1


@redis
async def test_redis_down_requests_still_succeed(cache: ResponseCache, redis_server: RedisServer) -> None:
    up = FakeUpstream("reasoning", "reasoning-model")
    app = create_app(settings(), upstreams={"fast": FakeUpstream("fast"), "reasoning": up}, cache=cache)
    async with client_for(app) as client:
        await client.post("/v1/chat/completions", json=ask("hi"))
        await stored(cache, 1)
        redis_server.kill()
        for _ in range(3):
            t = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=ask("hi"))
            assert r.status_code == 200 and r.headers["x-thinkgate-cache"] == "miss"
            assert time.perf_counter() - t < 0.5
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert "cache" in ready.json()["degraded"] and ready.json()["checks"]["cache"]["state"] == "down"
        redis_server.start()
        deadline = time.monotonic() + 8
        while (await cache.ready())["state"] != "up":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await client.post("/v1/chat/completions", json=ask("hi"))
        await stored(cache, 2)
        r = await client.post("/v1/chat/completions", json=ask("hi"))
        assert r.headers["x-thinkgate-cache"] == "exact"


@redis
async def test_admin_invalidate_route(cache: ResponseCache) -> None:
    up = FakeUpstream("reasoning", "reasoning-model")
    app = create_app(
        settings(), upstreams={"fast": FakeUpstream("fast"), "reasoning": up}, cache=cache,
        routes=cache_admin.routes(cache),
    )  # fmt: skip
    async with client_for(app) as client:
        await client.post("/v1/chat/completions", json=ask("hi"))
        await stored(cache, 1)
        bad = await client.post("/admin/cache/invalidate", json={})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        r = await client.post("/admin/cache/invalidate", json={"tenant": "default"})
        assert r.status_code == 200 and r.json()["invalidated"] == 1
        again = await client.post("/v1/chat/completions", json=ask("hi"))
        assert again.headers["x-thinkgate-cache"] == "miss"
        await stored(cache, 2)  # the answer to `again` is stored after the reply (this used to race)
        assert json.loads((await client.post("/admin/cache/invalidate", json={"all": True})).text)["invalidated"] == 1


async def test_embedded_cache_through_http() -> None:
    cache = build_cache(config.CacheSettings())  # no redis_url: the in-process backend
    up = FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="6*7"))
    app = create_app(settings(), upstreams={"fast": FakeUpstream("fast"), "reasoning": up}, cache=cache)
    async with client_for(app) as client:
        first = await client.post("/v1/chat/completions", json=ask("6*7?", stream=True))
        await stored(cache, 1)
        again = await client.post("/v1/chat/completions", json=ask("6*7?", stream=True))
        assert again.headers["x-thinkgate-cache"] == "exact"
        assert events(again.text) == events(first.text)
        ready = (await client.get("/readyz")).json()
        assert ready["checks"]["cache"]["backend"] == "memory" and "cache" not in ready["degraded"]
    await cache.close()


class AsCaller:
    """Stands in for the auth middleware: every request comes from `caller`."""

    def __init__(self, app: Any, caller: Caller) -> None:
        self.app, self.caller = app, caller

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["caller"] = self.caller
        await self.app(scope, receive, send)


async def test_admin_invalidate_needs_an_admin_caller() -> None:
    cache = build_cache(config.CacheSettings())
    app = create_app(
        settings(), upstreams={"fast": FakeUpstream("fast"), "reasoning": FakeUpstream("reasoning")}, cache=cache,
        routes=cache_admin.routes(cache), middleware=[Middleware(AsCaller, caller=Caller(tenant="t", admin=False))],
    )  # fmt: skip
    async with client_for(app) as client:
        r = await client.post("/admin/cache/invalidate", json={"tenant": "t"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    await cache.close()
