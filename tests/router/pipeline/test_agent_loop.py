"""Agent loops through the whole app (create_app, fake upstreams, a scripted agent
that really runs its tool loop): turn types in headers and records, a loop kept
on one route and model, the relay tier, escalation moving a loop up only, the
router reading the task and the latest turn, and the cache never answering a
loop turn from another session."""

from __future__ import annotations

from typing import Any

import httpx

from router import config
from router.app import create_app
from router.cache.response_cache import build_cache
from router.dashboard import routes as dashboard_routes
from router.decisions.log import MemoryDecisionLog
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeUpstream
from tests.router.pipeline.agent_session import SYSTEM, Task, TaskClassifier, ViewEmbedder, agent_model, run


class CtxUpstream(FakeUpstream):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ctxs: list[CallContext] = []

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        self.ctxs.append(ctx)
        return await super().complete(body, ctx)


def gateway(tasks: list[Task], agent: dict[str, Any] | None = None, *, selfref: bool = False, cache: dict[str, Any] | None = None,
            redis_url: str | None = None, log: Any = None) -> tuple[httpx.AsyncClient, dict[str, Any], TaskClassifier, ViewEmbedder]:  # fmt: skip
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model"},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True}},
        "routes": {"auto": {}},
        "selfref": {"enabled": selfref, "mode": "mean_logprob", "threshold": 0.5, "stream": "buffer"},
        "cache": cache or {"enabled": False},
        "routing": {"agent": agent or {}, "redis_url": redis_url, "timeout_ms": 500},
    })  # fmt: skip
    handler = agent_model(tasks)
    ups = {"fast": CtxUpstream("fast", "fast-model", handler), "reasoning": CtxUpstream("reasoning", "reasoning-model", handler)}
    clf, emb = TaskClassifier(), ViewEmbedder()
    extra: dict[str, Any] = {"log_sink": log, "routes": dashboard_routes(log)} if log is not None else {}
    if s.cache.enabled:
        extra["cache"] = build_cache(s.cache)
    app = create_app(s, upstreams=ups, embedder=emb, classifier=clf, **extra)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), ups, clf, emb


# an easy task whose tool results look hard, then a hard task with a summary turn
EASY = Task("rename foo to bar", ["hard: 300-line stack trace", "def foo(): ...", "hard: failing test output"])
HARD = Task("hard: find the race in the scheduler", ["scheduler.py source", "log excerpt", "test output"], summary=True)


async def test_keep_holds_each_loop_on_the_route_and_model_that_opened_it():
    client, _ups, clf, _emb = gateway([EASY, HARD])
    s = await run([client], [EASY, HARD])
    assert all(t.status == 200 for t in s.turns)
    assert [t.turn for t in s.turns] == ["task", "relay", "relay", "relay", "task", "relay", "relay", "summary"]
    easy, hard = s.turns[:4], s.turns[4:]
    assert {(t.route, t.model) for t in easy} == {("fast", "fast-model")}
    assert {(t.route, t.model) for t in hard} == {("reasoning", "reasoning-model")}
    assert [t.reason for t in s.turns] == ["classifier", "loop", "loop", "loop", "classifier", "loop", "loop", "loop"]
    # a held turn runs no classifier: it ran for the two task turns only
    assert len(clf.seen) == 2


async def test_independent_routes_every_turn_on_its_own():
    client, *_ = gateway([EASY, HARD], {"in_loop": "independent"})
    s = await run([client], [EASY, HARD])
    # the easy loop's "hard" tool results now move it to reasoning mid-loop
    assert [t.route for t in s.turns[:4]] == ["fast", "reasoning", "fast", "reasoning"]
    assert all(t.reason == "classifier" for t in s.turns)


async def test_the_router_reads_the_task_and_the_latest_turn_never_the_shared_system_prompt():
    client, ups, clf, emb = gateway([EASY], {"in_loop": "independent"})
    await run([client], [EASY])
    for seen in (clf.seen, emb.seen):
        assert len(seen) == 4
        assert all(SYSTEM[:40] not in str(m) for m in seen)
        assert seen[0] == [{"role": "user", "content": "rename foo to bar"}]
        assert seen[1] == [{"role": "user", "content": "rename foo to bar"}, {"role": "tool", "content": "hard: 300-line stack trace"}]
        assert seen[3][1]["content"] == "hard: failing test output"


async def test_the_relay_tier_takes_relay_turns_and_the_loop_keeps_its_model_for_the_rest():
    client, ups, *_ = gateway([HARD], {"relay": "fast"})
    s = await run([client], [HARD])
    assert [(t.turn, t.route, t.reason) for t in s.turns] == [
        ("task", "reasoning", "classifier"), ("relay", "fast", "relay"), ("relay", "fast", "relay"), ("summary", "reasoning", "loop"),
    ]  # fmt: skip
    assert len(ups["reasoning"].calls) == 2 and len(ups["fast"].calls) == 2  # two reasoning calls avoided


async def test_the_budget_relay_tier_keeps_the_model_and_caps_thinking():
    client, ups, *_ = gateway([HARD], {"relay": "budget", "relay_thinking_tokens": 256, "relay_deer_threshold": 0.8})
    s = await run([client], [HARD])
    assert {t.model for t in s.turns} == {"reasoning-model"}
    deer = [c.controls.deer for c in ups["reasoning"].ctxs]
    assert [(d.thinking_tokens, d.threshold) for d in deer] == [(None, None), (256, 0.8), (256, 0.8), (None, None)]


async def test_self_ref_escalation_moves_the_rest_of_the_loop_up_never_down():
    unsure = Task("rename a variable", ["file a", "file b", "file c"], low_confidence_at=1)
    client, ups, *_ = gateway([unsure], selfref=True)
    s = await run([client], [unsure])
    assert [(t.route, t.reason) for t in s.turns] == [
        ("fast", "classifier"), ("reasoning", "escalated"), ("reasoning", "loop"), ("reasoning", "loop"),
    ]  # fmt: skip
    assert s.turns[3].model == "reasoning-model"
    # with the relay tier on, the next relay is answered fast, and that does not lower
    # the loop: its summary turn is back on the reasoning model
    summed = Task("rename a variable", ["file a", "file b", "file c"], low_confidence_at=1, summary=True)
    client, ups, *_ = gateway([summed], {"relay": "fast"}, selfref=True)
    s = await run([client], [summed])
    assert [(t.turn, t.route, t.reason) for t in s.turns] == [
        ("task", "fast", "classifier"), ("relay", "reasoning", "escalated"), ("relay", "fast", "relay"), ("summary", "reasoning", "loop"),
    ]  # fmt: skip


async def test_a_rule_or_forced_route_is_obeyed_on_a_loop_turn():
    client, *_ = gateway([HARD])
    s = await run([client], [HARD], headers={"x-thinkgate-force-route": "fast"})
    assert {(t.route, t.reason) for t in s.turns} == {("fast", "forced")}
    assert [t.turn for t in s.turns] == ["task", "relay", "relay", "summary"]


async def test_chat_turns_are_recorded_as_chat_and_unchanged():
    client, ups, clf, emb = gateway([])
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hard: what is 2+2?"}]
    r = await client.post("/v1/chat/completions", json={"model": "auto", "messages": msgs}, headers={"x-thinkgate-debug": "1"})
    assert r.headers["x-thinkgate-turn"] == "chat" and "x-thinkgate-agent-session" not in r.headers
    assert r.json()["thinkgate"]["turn"] == "chat" and r.json()["thinkgate"]["session"] is None
    assert clf.seen == [msgs]  # the classifier reads a chat request as before


SEMANTIC = {"enabled": True, "semantic": True, "semantic_threshold": 0.5, "dim": 8}


async def test_no_cache_hit_answers_a_loop_turn_from_another_session():
    client, ups, *_ = gateway([EASY], cache=SEMANTIC)
    pipeline = client._transport.app.state.pipeline  # type: ignore[attr-defined]
    a = await run([client], [EASY], headers={"x-thinkgate-session": "alice-1"}, temperature=0)
    assert all(t.cache == "miss" for t in a.turns)
    await pipeline.recorder.drain()  # the answers are in the cache now
    assert pipeline.cache.stats["stored"] == 4
    # the same turns, byte for byte, from another session: every one goes upstream
    calls = len(ups["fast"].calls)
    b = await run([client], [EASY], headers={"x-thinkgate-session": "bob-7"}, temperature=0)
    assert [t.cache for t in b.turns] == ["miss"] * 4 and len(ups["fast"].calls) == calls + 4
    await pipeline.recorder.drain()
    # the same session resending a turn (a client retry) is answered from the cache
    r = await client.post("/v1/chat/completions", json=a.turns[2].sent, headers={"x-thinkgate-session": "alice-1"})
    assert r.headers["x-thinkgate-cache"] == "exact" and r.headers["x-thinkgate-turn"] == "relay"
    # a session the client does not name: loop turns skip the cache (no key can tell two apart)
    c = await run([client], [EASY], temperature=0)
    assert [t.cache for t in c.turns] == ["miss", "off", "off", "off"]
    await pipeline.recorder.drain()
    d = await run([client], [EASY], temperature=0)
    assert [t.cache for t in d.turns] == ["exact", "off", "off", "off"]  # the opening turn is the same request


async def test_a_chat_request_still_gets_semantic_hits_but_an_agent_turn_never_does():
    client, ups, *_ = gateway([], cache=SEMANTIC)
    chat = {"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": "what is a monad"}]}
    await client.post("/v1/chat/completions", json=chat)
    await client._transport.app.state.pipeline.recorder.drain()  # type: ignore[attr-defined]
    r = await client.post("/v1/chat/completions", json={**chat, "messages": [{"role": "user", "content": "what's a monad?"}]})
    assert r.headers["x-thinkgate-cache"] == "semantic"  # the constant embedder: every prompt is similar
    t = Task("what's a monad??", [])
    client, ups, *_ = gateway([t], cache=SEMANTIC)
    await client.post("/v1/chat/completions", json=chat)
    await client._transport.app.state.pipeline.recorder.drain()  # type: ignore[attr-defined]
    s = await run([client], [t], headers={"x-thinkgate-session": "s"}, temperature=0)
    assert s.turns[0].turn == "task" and s.turns[0].cache == "miss"


async def test_the_dashboard_shows_turn_types_and_reasoning_calls_per_session():
    log = MemoryDecisionLog()
    client, *_ = gateway([EASY, HARD], log=log)
    await run([client], [EASY], headers={"x-thinkgate-session": "one"})
    await run([client], [HARD], headers={"x-thinkgate-session": "two"})
    await client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    await client._transport.app.state.pipeline.recorder.drain()  # type: ignore[attr-defined]  # the log is written after the reply
    ag = (await client.get("/dashboard/api/summary")).json()["agents"]
    assert ag["turns"] == {"chat": 1, "task": 2, "relay": 5, "summary": 1}
    assert ag["sessions_total"] == 2
    two, one = ag["sessions"]  # newest first
    assert one["turns"] == {"chat": 0, "task": 1, "relay": 3, "summary": 0} and one["reasoning_calls"] == 0
    assert two["turns"] == {"chat": 0, "task": 1, "relay": 2, "summary": 1}
    assert two["reasoning_calls"] == 4 and two["relay_reasoning"] == 2 and two["models"] == ["reasoning-model"]


async def test_every_front_end_classifies_alike_and_anthropic_reminders_do_not_open_a_task():
    client, *_ = gateway([HARD])
    system = "You are Claude Code. " * 500
    tools = [{"name": "read", "description": "read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    first = {"role": "user", "content": [{"type": "text", "text": "<system-reminder>\n# CLAUDE.md\nuse tabs\n</system-reminder>"},
                                         {"type": "text", "text": HARD.text}]}  # fmt: skip
    use = {"role": "assistant", "content": [{"type": "text", "text": "Reading."},
                                            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "s.py"}}]}  # fmt: skip
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "scheduler.py source"},
                                          {"type": "text", "text": "<system-reminder>todo list is empty</system-reminder>"}]}  # fmt: skip
    base = {"model": "auto", "max_tokens": 256, "system": system}
    seen = []
    for body in ({**base, "tools": tools, "messages": [first]}, {**base, "tools": tools, "messages": [first, use, result]},
                 {**base, "messages": [first, use, result]}):  # fmt: skip
        r = await client.post("/v1/messages", json=body)
        assert r.status_code == 200, r.text
        seen.append((r.headers["x-thinkgate-turn"], r.headers["x-thinkgate-route"], r.headers["x-thinkgate-model"]))
    assert seen == [("task", "reasoning", "reasoning-model"), ("relay", "reasoning", "reasoning-model"), ("summary", "reasoning", "reasoning-model")]
    # the Responses API: a function_call_output last is a relay
    fn = {"type": "function", "name": "read", "parameters": {"type": "object", "properties": {}}}
    items = [{"type": "message", "role": "user", "content": "rename foo"},
             {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "def foo(): ..."}]  # fmt: skip
    r = await client.post("/v1/responses", json={"model": "auto", "input": items, "tools": [fn], "store": False})
    assert r.status_code == 200, r.text
    assert r.headers["x-thinkgate-turn"] == "relay"


async def test_a_streamed_turn_is_held_and_remembered_too():
    short = Task("rename foo to bar", ["hard: stack trace"])
    client, ups, *_ = gateway([short])
    s = await run([client], [short])  # task (fast), relay held fast though its result says "hard"
    relay = s.turns[1].sent
    async with client.stream("POST", "/v1/chat/completions", json={**relay, "stream": True}) as r:
        body = (await r.aread()).decode()
        assert r.headers["x-thinkgate-turn"] == "relay" and r.headers["x-thinkgate-route"] == "fast"
        assert r.headers["x-thinkgate-model"] == "fast-model"
    assert "data: [DONE]" in body
    # a streamed task turn opens its loop like any other: a new session's relay is then held
    task = {**s.turns[0].sent, "stream": True}
    h = {"x-thinkgate-session": "streamed"}
    async with client.stream("POST", "/v1/chat/completions", json=task, headers=h) as r:
        await r.aread()
        assert r.headers["x-thinkgate-turn"] == "task" and r.headers["x-thinkgate-route"] == "fast"
    r = await client.post("/v1/chat/completions", json=relay, headers={**h, "x-thinkgate-debug": "1"})
    assert r.json()["thinkgate"]["reason"] == "loop" and r.headers["x-thinkgate-route"] == "fast"
