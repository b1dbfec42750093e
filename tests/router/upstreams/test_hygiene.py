"""Message hygiene at the upstream seam, through the app, against the strict server:
what a strict provider would reject never leaves thinkgate, and what comes back is
one shape whatever the upstream named its thinking."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from router import config
from router.app import create_app
from router.upstreams.fake import FakeReply, FakeUpstream
from router.upstreams.hygiene import clean_body, clean_message, normalize_chunk, normalize_reply
from router.upstreams.openai_compat import OpenAICompatUpstream
from router.upstreams.strict_server import StrictOpenAIServer, violations

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def test_clean_message_keeps_only_the_roles_fields():
    m = {"role": "assistant", "content": "hi", "reasoning_content": "t", "reasoning": "t", "provider_specific_fields": {}}
    assert clean_message(m) == {"role": "assistant", "content": "hi"}
    assert clean_message(m, keep_reasoning=True) == {"role": "assistant", "content": "hi", "reasoning_content": "t", "reasoning": "t"}
    tool = {"role": "tool", "content": "3", "tool_call_id": "c1", "name": "f"}
    assert clean_message(tool) == {"role": "tool", "content": "3", "tool_call_id": "c1"}
    sdk = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "index": 0, "function": {"name": "f", "arguments": "{}", "parsed_arguments": {}}}]}  # fmt: skip
    assert clean_message(sdk)["tool_calls"] == [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert sdk["tool_calls"][0]["index"] == 0  # not mutated
    clean = {"role": "user", "content": "x", "name": "ann"}
    assert clean_message(clean) is clean  # nothing to drop: no copy


def test_clean_body_copies_only_when_it_changes_something():
    body = {"model": "m", "messages": [{"role": "user", "content": "a"}]}
    assert clean_body(body) is body
    dirty = {"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "reasoning": "r"}]}
    out = clean_body(dirty)
    assert out["messages"] == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert dirty["messages"][1]["reasoning"] == "r"  # the client's request is not mutated
    assert out["messages"][0] is dirty["messages"][0]


def test_normalize_accepts_either_reasoning_name():
    body = {"choices": [{"message": {"role": "assistant", "content": "a", "reasoning": "why"}}]}
    assert normalize_reply(body)["choices"][0]["message"] == {"role": "assistant", "content": "a", "reasoning_content": "why"}
    chunk = {"choices": [{"index": 0, "delta": {"reasoning": "w"}}]}
    assert normalize_chunk(chunk)["choices"][0]["delta"] == {"reasoning_content": "w"}


def test_strict_validator_wording_and_cases():
    ok = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert violations(ok) == []
    bad = {"model": "m", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "assistant", "content": "a", "reasoning_content": "t"},
        {"role": "tool", "content": "3"},
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
    ], "provider_specific_fields": {}}  # fmt: skip
    got = violations(bad)
    assert "messages[2]: unknown field(s) reasoning_content for role 'assistant'" in got
    assert "messages[3]: 'tool_call_id' is required for role 'tool'" in got
    assert any(v.startswith("messages[4].content[0]: part type 'image_url'") for v in got)
    assert "unknown field(s) provider_specific_fields in the request" in got
    assert len(got) == 4


# -- through the app -------------------------------------------------------------------


def _settings(**model_over: Any) -> config.Settings:
    return config.from_dict(
        {
            "models": {
                "fast": {"provider": "openai", "model": "fast-m", "api_base": "http://unused/v1"},
                "reasoning": {"provider": "openai", "model": "think-m", "api_base": "http://unused/v1", "reasoning": True, **model_over},
            },
            "selfref": {"enabled": False},
            "cache": {"enabled": False},
        }
    )


@pytest.fixture
async def strict():
    servers: list[StrictOpenAIServer] = []

    async def make(**kw: Any) -> tuple[StrictOpenAIServer, StrictOpenAIServer]:
        fast = await StrictOpenAIServer(**kw.get("fast", {})).start()
        think = await StrictOpenAIServer(reasoning=kw.get("reasoning", "reasoning_content")).start()
        servers.extend([fast, think])
        return fast, think

    yield make
    for s in servers:
        await s.stop()


def _client(s: config.Settings, fast: StrictOpenAIServer, think: StrictOpenAIServer) -> tuple[httpx.AsyncClient, list[Any]]:
    ups = {"fast": OpenAICompatUpstream("fast", "fast-m", fast.api_base), "reasoning": OpenAICompatUpstream("reasoning", "think-m", think.api_base)}
    app = create_app(s, upstreams=ups)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), list(ups.values())


async def test_the_strict_server_really_rejects_reasoning_history(strict):
    fast, _ = await strict()
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "t"}, {"role": "user", "content": "q2"}]
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{fast.api_base}/chat/completions", json={"model": "m", "messages": msgs})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "messages[1]: unknown field(s) reasoning_content for role 'assistant'"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("upstream_name", ["reasoning_content", "reasoning"])
async def test_tool_loop_after_a_reasoning_turn_passes_a_strict_upstream(strict, stream: bool, upstream_name: str):
    fast, think = await strict(reasoning=upstream_name)
    client, ups = _client(_settings(), fast, think)
    headers = {"x-thinkgate-force-route": "reasoning"}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    body = {"model": "auto", "messages": messages, "tools": TOOLS, "stream": stream}
    r = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["x-thinkgate-route"] == "reasoning"
    if stream:
        chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # the upstream sent none
        reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
        assert not any("reasoning" in c["choices"][0]["delta"] for c in chunks if c["choices"])
        calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
        msg = {"role": "assistant", "content": None, "tool_calls": [{k: calls[0][k] for k in ("id", "type", "function")}]}
        msg["reasoning_content"] = reasoning
    else:
        msg = r.json()["choices"][0]["message"]
        assert "reasoning" not in msg
        reasoning = msg["reasoning_content"]
    assert reasoning.strip() == "Let me think. The user wants an answer."
    # what SDKs send back: the whole assistant message, thinking and client extras included
    msg["provider_specific_fields"] = {"refusal": None}
    call = msg["tool_calls"][0]
    messages += [msg, {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"}]
    r2 = await client.post("/v1/chat/completions", json={**body, "messages": messages}, headers=headers)
    assert r2.status_code == 200, r2.text
    assert think.rejected == []
    sent = think.accepted[-1]["messages"][1]
    assert set(sent) == {"role", "content", "tool_calls"}
    text = r2.text if stream else r2.json()["choices"][0]["message"]["content"]
    assert "sunny" in text
    for u in ups:
        await u.close()


async def test_a_model_that_accepts_reasoning_history_gets_it():
    seen: list[dict[str, Any]] = []

    def record(body: dict[str, Any]) -> FakeReply:
        seen.append(body)
        return FakeReply("ok")

    s = config.from_dict({"models": {"fast": {"provider": "fake", "accepts_reasoning_history": True}, "reasoning": {"provider": "fake"}}, "selfref": {"enabled": False}})
    ups = {"fast": FakeUpstream("fast", "f", record), "reasoning": FakeUpstream("reasoning", "r", record)}
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(s, upstreams=ups)), base_url="http://tg")
    hist = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "t", "x_extra": 1}, {"role": "user", "content": "q2"}]
    for route in ("fast", "reasoning"):
        r = await client.post("/v1/chat/completions", json={"model": "auto", "messages": hist}, headers={"x-thinkgate-force-route": route})
        assert r.status_code == 200
    assert seen[0]["messages"][1] == {"role": "assistant", "content": "a", "reasoning_content": "t"}
    assert seen[1]["messages"][1] == {"role": "assistant", "content": "a"}


@pytest.mark.parametrize("stream", [False, True])
async def test_the_client_chooses_the_reasoning_name(strict, stream: bool):
    fast, think = await strict(reasoning="reasoning_content")
    s = config.from_dict({**_settings().model_dump(exclude_unset=True), "routes": {"auto": {}, "vllm-style": {"reasoning_field": "reasoning"}}})
    client, ups = _client(s, fast, think)
    async def ask(alias: str, **headers: str) -> str:
        h = {"x-thinkgate-force-route": "reasoning", **headers}
        r = await client.post("/v1/chat/completions", json={"model": alias, "messages": [{"role": "user", "content": "q"}], "stream": stream}, headers=h)
        assert r.status_code == 200, r.text
        return r.text
    assert '"reasoning_content"' in await ask("auto") and '"reasoning"' not in await ask("auto")
    for text in (await ask("vllm-style"), await ask("auto", **{"x-thinkgate-reasoning-field": "reasoning"})):
        assert '"reasoning"' in text and '"reasoning_content"' not in text
    r = await client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "q"}]}, headers={"x-thinkgate-reasoning-field": "thoughts"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-thinkgate-reasoning-field"
    for u in ups:
        await u.close()


async def test_history_thinking_is_not_part_of_the_cache_key():
    s = config.from_dict({"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake"}}, "selfref": {"enabled": False}})
    app = create_app(s, upstreams={"fast": FakeUpstream("fast", "f"), "reasoning": FakeUpstream("reasoning", "r")}, cache=_cache(s))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")
    turn = {"role": "assistant", "content": "a"}
    def body(extra: dict[str, Any]) -> dict[str, Any]:
        return {"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": "q"}, {**turn, **extra}, {"role": "user", "content": "q2"}]}
    cache = app.state.pipeline.cache
    r1 = await client.post("/v1/chat/completions", json=body({"reasoning_content": "t", "provider_specific_fields": {}}))
    await app.state.pipeline.drain()  # the pipeline stores after replying
    assert cache.stats["stored"] == 1
    r2 = await client.post("/v1/chat/completions", json=body({}))
    assert (r1.headers["x-thinkgate-cache"], r2.headers["x-thinkgate-cache"]) == ("miss", "exact")
    r3 = await client.post("/v1/chat/completions", json=body({"content": "b"}))
    assert r3.headers["x-thinkgate-cache"] == "miss"  # the visible history still is


def _cache(s: config.Settings) -> Any:
    from router.cache import build_cache

    return build_cache(s.cache.model_copy(update={"semantic": False}))
