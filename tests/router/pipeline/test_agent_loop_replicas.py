"""An agent loop across two gateway replicas sharing a real Redis: the turns
alternate between the replicas and the loop keeps the route and model of the
turn that opened it; the state lives in Redis under the loop's {hash tag}; a
Redis outage routes each turn on its own and fails nothing."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aredis

from router.cache.testing import RedisServer
from tests.router.pipeline.agent_session import Task, run
from tests.router.pipeline.test_agent_loop import EASY, HARD, gateway

pytestmark = pytest.mark.redis


async def test_the_loop_is_held_across_two_replicas_on_one_redis(redis_url: str):
    a, ups_a, clf_a, _ = gateway([EASY, HARD], redis_url=redis_url)
    b, ups_b, clf_b, _ = gateway([EASY, HARD], redis_url=redis_url)
    s = await run([a, b], [EASY, HARD])  # turn i on replica i % 2
    assert [t.turn for t in s.turns] == ["task", "relay", "relay", "relay", "task", "relay", "relay", "summary"]
    assert [t.route for t in s.turns] == ["fast"] * 4 + ["reasoning"] * 4
    assert [t.reason for t in s.turns[1:4]] == ["loop"] * 3
    # every odd turn ran on replica B, which never saw the task turn: the state came from Redis
    assert len(ups_b["fast"].calls) == 2 and len(ups_b["reasoning"].calls) == 2
    assert len(clf_b.seen) == 0 and len(clf_a.seen) == 2
    r = aredis.from_url(redis_url)
    keys = sorted([k.decode() async for k in r.scan_iter("thinkgate:loop:*")])
    assert len(keys) == 2 and all(k.startswith("thinkgate:loop:{") and k.endswith("}:state") for k in keys)
    states = sorted([json.loads(await r.get(k)) for k in keys], key=lambda x: x["route"])
    assert states == [{"route": "fast", "model": "fast"}, {"route": "reasoning", "model": "reasoning"}]
    assert 0 < await r.ttl(keys[0]) <= 3600
    await r.aclose()
    # a replica that does not share the state routes the same relay turn on its own
    c, *_ = gateway([EASY])
    r = await c.post("/v1/chat/completions", json=s.turns[1].sent, headers={"x-thinkgate-debug": "1"})
    assert r.headers["x-thinkgate-turn"] == "relay" and r.headers["x-thinkgate-route"] == "reasoning"  # its result says "hard"
    assert r.json()["thinkgate"]["reason"] == "classifier"


async def test_escalation_on_one_replica_lifts_the_loop_on_the_other(redis_url: str):
    unsure = Task("rename a variable", ["file a", "file b", "file c"], low_confidence_at=1, summary=True)
    a, *_ = gateway([unsure], selfref=True, redis_url=redis_url)
    b, *_ = gateway([unsure], {"relay": "fast"}, selfref=True, redis_url=redis_url)
    s = await run([a, b], [unsure])
    # turn 2 escalates on B; turn 3 (A, no relay tier) is held on reasoning; turn 4 (B) is the summary
    assert [(t.route, t.reason) for t in s.turns] == [
        ("fast", "classifier"), ("reasoning", "escalated"), ("reasoning", "loop"), ("reasoning", "loop"),
    ]  # fmt: skip


async def test_redis_down_routes_each_turn_on_its_own(redis_url: str, redis_server: RedisServer):
    a, *_ = gateway([EASY], redis_url=redis_url)
    redis_server.kill()
    s = await run([a], [EASY])
    assert all(t.status == 200 for t in s.turns)
    assert [t.reason for t in s.turns] == ["classifier"] * 4  # nothing to hold: every turn on its own
