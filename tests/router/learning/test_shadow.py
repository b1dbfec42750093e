"""Shadow sampling and escalation grading through the app, with in-process fakes:
what gets asked, graded and logged, and that the client's answer never changes."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest

from router import config, errors
from router.app import create_app
from router.embedding.batcher import fake_embedder
from router.learning.outcome_log import JsonlOutcomeLog
from router.learning.shadow import Learner
from router.learning.slot import ClassifierSlot
from router.upstreams.fake import FakeReply, FakeUpstream
from tests.router.learning.helpers import judge_prefers, write_artifact

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is six times seven?"}]}


def settings(**learning: Any) -> config.Settings:
    over = dict(learning.pop("_top", {}))
    data: dict[str, Any] = {
        "models": {
            "fast": {"provider": "fake", "model": "fast-model", "price": {"input": 1, "output": 2}},
            "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True, "price": {"input": 10, "output": 40}},
            "judge": {"provider": "fake", "model": "judge-model"},
        },
        "routes": {"auto": {}, "pinned": {"pin": "fast"}},
        "selfref": {"enabled": False},
        "cache": {"enabled": False},
        "learning": {"shadow_rate": 1.0, "judge": "judge", **learning},
    }
    data.update(over)
    return config.from_dict(data)


def make(tmp_path, s: config.Settings, *, fast=None, reasoning=None, judge=None, threshold: float = 0.9):
    ups = {
        "fast": fast or FakeUpstream("fast", "fast-model"),
        "reasoning": reasoning or FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42")),
        "judge": judge or FakeUpstream("judge", "judge-model", judge_prefers("42")),
    }
    art = write_artifact(tmp_path / "art", threshold=threshold)
    embedder = fake_embedder()
    slot = ClassifierSlot.load(str(art), embedder.dim)
    log = JsonlOutcomeLog(tmp_path / "outcomes.jsonl")
    learner = Learner(s, ups, log, rng=random.Random(0))
    app = create_app(s, upstreams=ups, embedder=embedder, classifier=slot, learner=learner)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")
    return client, ups, learner, log, slot


def records(log: JsonlOutcomeLog) -> list[dict[str, Any]]:
    if not log.path.exists():
        return []
    return [json.loads(ln) for ln in log.path.read_text().splitlines()]


async def test_non_streamed_request_is_shadowed_graded_and_logged(tmp_path):
    client, ups, learner, log, slot = make(tmp_path, settings())
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "echo: What is six times seven?"  # the fast answer, unchanged
    assert r.headers["x-thinkgate-route"] == "fast"
    assert r.headers["x-thinkgate-router"] == slot.current.version
    await learner.wait_idle()
    assert len(ups["reasoning"].calls) == 1  # the route not taken, asked once
    assert "stream" not in ups["reasoning"].calls[0]
    assert len(ups["judge"].calls) == 2  # both orders
    [rec] = records(log)
    assert rec["fast"] == 0.0 and rec["strong"] == 1.0  # the judge preferred the reasoning answer in both orders
    assert rec["id"] == r.headers["x-thinkgate-request-id"]
    assert rec["tenant"] == "default" and rec["route"] == "fast" and rec["source"] == "shadow"
    assert rec["artifact"] == slot.current.version and 0 <= rec["difficulty"] <= 1 and rec["threshold"] == 0.9
    assert rec["fast_model"] == "fast" and rec["strong_model"] == "reasoning" and rec["judge"] == "judge"
    assert rec["strong_cost"] > 0 and rec["fast_tokens"] > 0 and isinstance(rec["ts"], float)
    # decisions.store_prompt is off by default: no prompt text, an id and the embedding instead
    assert "prompt" not in rec and len(rec["prompt_sha256"]) == 64 and len(rec["embedding"]) == 384
    assert learner.stats.recorded == 1 and learner.stats.failed == 0


async def test_streamed_request_is_shadowed_after_the_stream(tmp_path):
    client, ups, learner, log, _ = make(tmp_path, settings(_top={"decisions": {"store_prompt": True}}), threshold=0.0)
    async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        assert r.headers["x-thinkgate-route"] == "reasoning"
        text = "".join(
            (json.loads(ln[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for ln in [x async for x in r.aiter_lines()] if ln.startswith("data: {")
        )  # fmt: skip
    assert text == "42"
    await learner.wait_idle()
    assert len(ups["fast"].calls) == 1 and "stream" not in ups["fast"].calls[0]  # the fast route was the one not taken
    [rec] = records(log)
    assert rec["route"] == "reasoning" and rec["strong"] == 1.0
    assert rec["prompt"] == "What is six times seven?"  # store_prompt on: the text is kept


async def test_rate_zero_and_pinned_aliases_are_never_shadowed(tmp_path):
    client, ups, learner, log, _ = make(tmp_path, settings(shadow_rate=0.0))
    for _ in range(5):
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    client2, ups2, learner2, log2, _ = make(tmp_path / "b", settings())
    assert (await client2.post("/v1/chat/completions", json={**CHAT, "model": "pinned"})).status_code == 200
    await learner.wait_idle()
    await learner2.wait_idle()
    assert ups["reasoning"].calls == [] and ups2["reasoning"].calls == [] and ups["judge"].calls == []
    assert records(log) == [] and records(log2) == []


async def test_shadow_rate_samples_that_share(tmp_path):
    client, ups, learner, log, _ = make(tmp_path, settings(shadow_rate=0.3, max_concurrent=100))
    for _ in range(100):
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    await learner.wait_idle()
    assert 15 <= learner.stats.sampled <= 45  # Binomial(100, 0.3) with the seeded rng
    assert len(ups["reasoning"].calls) == learner.stats.sampled == len(records(log))


async def test_hourly_token_budget_caps_the_extra_calls(tmp_path):
    # each job spends the shadow call and two judge calls; a cap of 1 token stops after the first job
    client, ups, learner, log, _ = make(tmp_path, settings(budget_tokens_per_hour=1))
    for _ in range(6):
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        await learner.wait_idle()
    assert len(ups["reasoning"].calls) == 1 and len(ups["judge"].calls) == 2
    assert learner.stats.over_budget == 5 and len(records(log)) == 1
    assert learner.budget.state()["tokens"] > 1


async def test_a_failing_shadow_call_never_reaches_the_client(tmp_path, caplog):
    def broken(body: dict[str, Any]) -> FakeReply:
        raise errors.UpstreamUnavailable("reasoning is down", upstream="reasoning")

    client, ups, learner, log, _ = make(tmp_path, settings(), reasoning=FakeUpstream("reasoning", "reasoning-model", broken))
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].startswith("echo:")
    await learner.wait_idle()
    assert learner.stats.failed == 1 and learner.stats.recorded == 0 and records(log) == []
    assert ups["judge"].calls == []
    assert "shadow job" in caplog.text and "reasoning is down" in caplog.text


async def test_a_judge_without_a_verdict_leaves_the_pair_ungraded(tmp_path):
    judge = FakeUpstream("judge", "judge-model", lambda b: FakeReply("Both are fine answers."))
    client, ups, learner, log, _ = make(tmp_path, settings(), judge=judge)
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    await learner.wait_idle()
    assert learner.stats.ungraded == 1 and records(log) == []


async def test_busy_jobs_are_dropped_not_queued(tmp_path):
    import asyncio

    slow = FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42"), delay=0.3)
    client, ups, learner, log, _ = make(tmp_path, settings(max_concurrent=2), reasoning=slow)
    rs = await asyncio.gather(*(client.post("/v1/chat/completions", json=CHAT) for _ in range(6)))
    assert all(r.status_code == 200 for r in rs)
    await learner.wait_idle()
    assert learner.stats.started + learner.stats.busy == 6 and learner.stats.busy >= 1
    assert len(slow.calls) == learner.stats.started


@pytest.mark.parametrize("stream", [False, True])
async def test_escalations_are_graded_without_an_extra_call(tmp_path, stream):
    s = settings(shadow_rate=0.0, _top={"selfref": {"enabled": True, "threshold": 0.5}})
    fast = FakeUpstream("fast", "fast-model", lambda b: FakeReply("maybe 41", token_prob=0.1))
    client, ups, learner, log, _ = make(tmp_path, s, fast=fast)
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert r.headers["x-thinkgate-escalated"] == "true"
    if stream:
        assert '"42"' in r.text and "maybe 41" not in r.text  # the client saw only the reasoning answer
    else:
        assert r.json()["choices"][0]["message"]["content"] == "42"
    await learner.wait_idle()
    assert len(ups["fast"].calls) == 1 and len(ups["reasoning"].calls) == 1  # no shadow call
    [rec] = records(log)
    assert rec["source"] == "escalation" and rec["fast"] == 0.0 and rec["strong"] == 1.0
    assert rec["fast_confidence"] < 0.5 and rec["fast_model"] == "fast" and rec["strong_model"] == "reasoning"


@pytest.mark.parametrize("stream", [False, True])
async def test_tenant_is_recorded(tmp_path, stream):
    from router.types import Caller

    s = settings()
    client, ups, learner, log, _ = make(tmp_path, s)
    app = client._transport.app  # type: ignore[attr-defined]

    async def as_acme(scope, receive, send):
        scope.setdefault("state", {})["caller"] = Caller(tenant="acme")
        await app(scope, receive, send)

    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=as_acme), base_url="http://tg")
    r = await c.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert r.status_code == 200
    await learner.wait_idle()
    [rec] = records(log)
    assert rec["tenant"] == "acme"
    assert [x["tenant"] for x in await log.recent(10, tenant="acme")] == ["acme"] and await log.recent(10, tenant="other") == []


async def test_shutdown_cancels_running_jobs_and_the_app_lifespan_does_it(tmp_path):
    import asyncio

    slow = FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42"), delay=30)
    s = settings()
    client, ups, learner, log, _ = make(tmp_path, s, reasoning=slow)
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    await asyncio.sleep(0.05)
    assert learner.state()["running"] == 1
    t = asyncio.get_running_loop().time()
    await learner.close()
    assert asyncio.get_running_loop().time() - t < 1.0 and learner.state()["running"] == 0
    assert learner.stats.failed == 0 and records(log) == []  # cancelled, not counted as a failure

    # through the app's lifespan: the undo returned by an on_start hook runs first at shutdown
    learner2 = Learner(s, ups, JsonlOutcomeLog(tmp_path / "o2.jsonl"))
    closed: list[str] = []

    async def start_learning():
        async def undo():
            closed.append("learner")
            await learner2.close()

        return undo

    app = create_app(s, upstreams=ups, learner=learner2, on_start=[start_learning], on_close=[lambda: _note(closed)])
    async with app.router.lifespan_context(app):
        pass
    assert closed == ["learner", "on_close"]


async def _note(closed: list[str]) -> None:
    closed.append("on_close")


async def test_the_shadow_call_gets_the_same_message_hygiene(tmp_path):
    client, ups, learner, log, slot = make(tmp_path, settings())
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "reasoning_content": "t", "provider_specific_fields": {}},
        {"role": "user", "content": "What is six times seven?"},
    ]
    r = await client.post("/v1/chat/completions", json={"model": "auto", "messages": history})
    assert r.status_code == 200
    await learner.wait_idle()
    for name in ("fast", "reasoning"):  # the answer and the shadow answer
        assert ups[name].calls[0]["messages"][1] == {"role": "assistant", "content": "hello"}


FRONT_ENDS = {
    "responses": ("/v1/responses", {"model": "auto", "input": "What is six times seven?"}),
    "messages": ("/v1/messages", {"model": "auto", "max_tokens": 64, "messages": CHAT["messages"]}),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("front", sorted(FRONT_ENDS))
async def test_every_front_end_is_shadowed(tmp_path, front, stream):
    # the shadow job runs after the reply is sent, whatever protocol carried it
    client, ups, learner, log, _ = make(tmp_path, settings())
    path, body = FRONT_ENDS[front]
    async with client.stream("POST", path, json={**body, "stream": stream}) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["x-thinkgate-route"] == "fast"
        await r.aread()
    await learner.wait_idle()
    assert len(ups["reasoning"].calls) == 1 and len(ups["judge"].calls) == 2
    [rec] = records(log)
    assert rec["route"] == "fast" and rec["source"] == "shadow" and rec["strong"] == 1.0


async def test_an_agent_turn_is_logged_as_the_router_read_it(tmp_path):
    # the outcome log trains the classifier: an agent turn's prompt is its task and latest
    # tool result (policies.agent_turn.routing_messages), not the shared system prompt
    client, ups, learner, log, _ = make(tmp_path, settings(_top={"decisions": {"store_prompt": True}}), threshold=0.0)
    tools = [{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}]
    msgs = [{"role": "system", "content": "You are an agent. " * 500}, {"role": "user", "content": "fix the parser"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "def parse(): ..."}]  # fmt: skip
    r = await client.post("/v1/chat/completions", json={"model": "auto", "messages": msgs, "tools": tools})
    assert r.status_code == 200 and r.headers["x-thinkgate-turn"] == "relay"
    await learner.wait_idle()
    [rec] = records(log)
    assert rec["prompt"] == [{"role": "user", "content": "fix the parser"}, {"role": "tool", "content": "def parse(): ..."}]
