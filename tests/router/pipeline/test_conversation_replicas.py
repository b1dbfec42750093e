"""Conversation-aware routing across two gateway replicas sharing a real Redis:
the second turn lands on the other replica and still follows the first turn's
route; headers and decision records say when stickiness decided."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as aredis

from router import config
from router.app import create_app
from router.cache.testing import RedisServer
from router.upstreams.fake import FakeReply, FakeUpstream
from tests.router.pipeline.test_rules_step import ConstEmbedder, FixedClassifier

pytestmark = pytest.mark.redis


def replica(mode: str, redis_url: str | None) -> tuple[httpx.AsyncClient, Any]:
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model"},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True}},
        "selfref": {"enabled": False},
        "cache": {"enabled": False},
        "routing": {"conversation": mode, "redis_url": redis_url, "margin": 0.3, "ttl_s": 120, "timeout_ms": 500},
    })
    ups = {"fast": FakeUpstream("fast", "fast-model", lambda b: FakeReply("ok")),
           "reasoning": FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("ok"))}
    app = create_app(s, upstreams=ups, embedder=ConstEmbedder(), classifier=FixedClassifier())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), app


def turns(*users: str) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "you help with code"}]
    for i, u in enumerate(users):
        if i:
            msgs.append({"role": "assistant", "content": f"answer {i}"})
        msgs.append({"role": "user", "content": u})
    return {"model": "auto", "messages": msgs}


DEBUG = {"x-thinkgate-debug": "1"}


async def test_sticky_holds_the_first_route_on_the_other_replica(redis_url: str):
    a, app_a = replica("sticky", redis_url)
    b, app_b = replica("sticky", redis_url)
    r1 = await a.post("/v1/chat/completions", json=turns("write a sort"), headers=DEBUG)
    assert r1.headers["x-thinkgate-route"] == "fast" and r1.headers["x-thinkgate-sticky"] == "false"
    cid = r1.headers["x-thinkgate-conversation"]
    # turn 2 on replica B: alone it would reason (P 0.7 >= 0.5), but not by the 0.3 margin
    r2 = await b.post("/v1/chat/completions", json=turns("write a sort", "hard: now in Python?"), headers=DEBUG)
    assert r2.headers["x-thinkgate-conversation"] == cid
    assert r2.headers["x-thinkgate-route"] == "fast" and r2.headers["x-thinkgate-sticky"] == "true"
    d = r2.json()["thinkgate"]
    assert d["reason"] == "sticky" and d["sticky"] is True and d["difficulty"] == 0.7
    # the route lives in Redis under a {hash tag}, with the configured idle TTL
    r = aredis.from_url(redis_url)
    key = f"thinkgate:conv:{{{cid}}}:route"
    assert await r.get(key) == b"fast" and 0 < await r.ttl(key) <= 120
    await r.aclose()
    # a replica with no shared state routes the same turn on its own
    c, _ = replica("sticky", None)
    r3 = await c.post("/v1/chat/completions", json=turns("write a sort", "hard: now in Python?"))
    assert r3.headers["x-thinkgate-route"] == "reasoning" and r3.headers["x-thinkgate-sticky"] == "false"
    for app in (app_a, app_b):
        await app.state.pipeline.drain()


async def test_monotone_never_moves_back_to_fast_across_replicas_and_the_session_header_names_it(redis_url: str):
    a, _ = replica("monotone", redis_url)
    b, _ = replica("monotone", redis_url)
    h = {"x-thinkgate-session": "chat-42"}
    r1 = await a.post("/v1/chat/completions", json=turns("hard: prove it"), headers=h)
    assert r1.headers["x-thinkgate-route"] == "reasoning"
    r2 = await b.post("/v1/chat/completions", json=turns("something else", "thanks"), headers=h)
    assert r2.headers["x-thinkgate-route"] == "reasoning" and r2.headers["x-thinkgate-sticky"] == "true"
    # another session on the same replica is untouched
    r3 = await b.post("/v1/chat/completions", json=turns("thanks"), headers={"x-thinkgate-session": "chat-43"})
    assert r3.headers["x-thinkgate-route"] == "fast" and r3.headers["x-thinkgate-sticky"] == "false"


async def test_streamed_turns_are_remembered_too(redis_url: str):
    a, _ = replica("monotone", redis_url)
    b, _ = replica("monotone", redis_url)
    async with a.stream("POST", "/v1/chat/completions", json={**turns("hard: go"), "stream": True}) as r:
        await r.aread()
        assert r.headers["x-thinkgate-route"] == "reasoning"
    async with b.stream("POST", "/v1/chat/completions", json={**turns("hard: go", "ok"), "stream": True}) as r:
        body = (await r.aread()).decode()
        assert r.headers["x-thinkgate-route"] == "reasoning" and r.headers["x-thinkgate-sticky"] == "true"
    assert "data: [DONE]" in body


async def test_redis_down_routes_each_turn_on_its_own(redis_url: str, redis_server: RedisServer):
    a, _ = replica("monotone", redis_url)
    redis_server.kill()
    r = await a.post("/v1/chat/completions", json=turns("hard: go"))
    assert r.status_code == 200 and r.headers["x-thinkgate-route"] == "reasoning"
    r = await a.post("/v1/chat/completions", json=turns("hard: go", "thanks"))
    assert r.status_code == 200 and r.headers["x-thinkgate-sticky"] == "false"
