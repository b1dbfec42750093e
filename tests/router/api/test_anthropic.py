"""POST /v1/messages and /v1/messages/count_tokens with in-process fake upstreams:
the translation both ways, the event stream, and Anthropic-shaped errors from the
routes and from the auth, limit and body-size middlewares."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from router import errors
from router.access.auth import KeyStore
from router.access.limits import Limiter, estimate_tokens
from router.access.middleware import middleware
from router.api.anthropic.reply import SIGNATURE
from router.app import create_app
from router.config import ApiKey
from router.types import DeerStats
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeReply, FakeUpstream, failing
from router.upstreams.user_field import hashed
from tests.router.test_app import make, settings

HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "anything-2099-01-01"}
BASIC = {"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "hi there"}]}


def assert_anthropic_error(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and set(body) == {"type", "error"}
    assert body["error"]["type"] == kind, body
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    return body["error"]["message"]


def events(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse an SSE body strictly: every event has `event:` and `data:` whose type matches."""
    out = []
    for block in r.text.strip().split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        name, data = lines[0][7:], json.loads(lines[1][6:])
        assert data["type"] == name
        out.append((name, data))
    return out


class CtxRecorder(FakeUpstream):
    """A fake that also keeps the CallContext it was called with."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ctxs: list[CallContext] = []

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        self.ctxs.append(ctx)
        return await super().complete(body, ctx)


class BreaksMidStream(FakeUpstream):
    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        gen = super().stream(body, ctx)
        yield await gen.__anext__()
        yield await gen.__anext__()
        await gen.aclose()
        raise errors.UpstreamUnavailable("upstream fast reset the connection", upstream="fast")


# -- requests ---------------------------------------------------------------------


async def test_text_message_round_trip_and_headers():
    client, ups = make()
    r = await client.post("/v1/messages", json={**BASIC, "system": "be brief"}, headers=HEADERS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "message" and body["role"] == "assistant" and body["id"].startswith("msg_")
    assert body["content"] == [{"type": "text", "text": "echo: hi there"}]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    sent = ups["fast"].calls[0]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    assert sent["max_tokens"] == 64 and sent["model"] == "fast-model"
    # usage is the upstream's, renamed
    up_usage = FakeUpstream._usage(sent, 3)
    assert body["usage"]["input_tokens"] == up_usage["prompt_tokens"] and body["usage"]["output_tokens"] == 3
    assert r.headers["x-thinkgate-route"] == "fast" and r.headers["x-thinkgate-cache"] in ("miss", "exact")


async def test_blocks_tools_and_sampling_translate_to_openai():
    client, ups = make()
    req = {
        "model": "auto",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "rule one"}, {"type": "text", "text": "rule two", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "secret musing", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xx"},
                {"type": "text", "text": "let me check"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "rain"}]},
                {"type": "text", "text": "and now?"},
            ]},
        ],
        "tools": [{"name": "weather", "description": "w", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        "stop_sequences": ["END", "STOP"],
        "temperature": 0.5, "top_p": 0.9, "top_k": 40,
        "metadata": {"user_id": "u-42"},
    }  # fmt: skip
    r = await client.post("/v1/messages", json=req, headers=HEADERS)
    assert r.status_code == 200, r.text
    sent = ups["fast"].calls[0]
    assert sent["messages"] == [
        {"role": "system", "content": "rule one\n\nrule two"},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        ]},
        {"role": "assistant", "content": "let me check", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"},
        {"role": "user", "content": "and now?"},
    ]  # fmt: skip
    assert "secret musing" not in json.dumps(sent)
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "weather", "parameters": req["tools"][0]["input_schema"], "description": "w"}}]  # fmt: skip
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["stop"] == ["END", "STOP"]
    # metadata.user_id is `user` upstream, hashed by default (server.upstream_user)
    assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["user"]) == (0.5, 0.9, 40, hashed("u-42", "thinkgate"))


async def test_tool_choice_kinds_and_error_results():
    client, ups = make()
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    for kind, want in (("auto", "auto"), ("any", "required"), ("none", "none")):
        r = await client.post("/v1/messages", json={**BASIC, "tools": tools, "tool_choice": {"type": kind}})
        assert r.status_code == 200, r.text
        assert ups["fast"].calls[-1]["tool_choice"] == want
    msgs = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}],
        },
    ]
    r = await client.post("/v1/messages", json={**BASIC, "tools": tools, "messages": msgs})
    assert r.status_code == 200, r.text
    sent = ups["fast"].calls[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}  # fmt: skip
    assert sent[2] == {"role": "tool", "tool_call_id": "t1", "content": "[tool error] boom"}
    assert len(sent) == 3  # no empty user turn after the tool result


async def test_tool_use_reply():
    calls = [{"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]
    fast = FakeUpstream("fast", "fast-model", lambda b: FakeReply("", tool_calls=calls))
    client, _ = make(fast=fast)
    r = await client.post(
        "/v1/messages", json={**BASIC, "tools": [{"name": "weather", "input_schema": {"type": "object"}}]}
    )
    body = r.json()
    assert body["stop_reason"] == "tool_use"
    assert body["content"] == [{"type": "tool_use", "id": "call_9", "name": "weather", "input": {"city": "Oslo"}}]


async def test_stop_reasons():
    long = FakeUpstream("fast", "fast-model", lambda b: FakeReply("cut", finish_reason="length"))
    client, _ = make(fast=long)
    assert (await client.post("/v1/messages", json=BASIC)).json()["stop_reason"] == "max_tokens"

    class VllmLike(FakeUpstream):  # vLLM names the stop string that matched
        async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
            out = await super().complete(body, ctx)
            out["choices"][0]["stop_reason"] = "END"
            return out

    client, _ = make(fast=VllmLike("fast", "fast-model"))
    body = (await client.post("/v1/messages", json={**BASIC, "stop_sequences": ["END"]})).json()
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "END")
    body = (await client.post("/v1/messages", json={**BASIC, "stop_sequences": ["OTHER"]})).json()
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)


async def test_thinking_blocks_only_when_enabled_and_budget_reaches_deer():
    reasoning = CtxRecorder("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="think hard"))
    client, _ = make(reasoning=reasoning)
    req = {**BASIC, "model": "pinned", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    r = await client.post("/v1/messages", json=req)
    assert r.status_code == 200, r.text
    assert r.headers["x-thinkgate-route"] == "reasoning"
    assert r.json()["content"] == [
        {"type": "thinking", "thinking": "think hard", "signature": SIGNATURE},
        {"type": "text", "text": "42"},
    ]
    assert reasoning.ctxs[-1].controls.deer.budget_tokens == 1024
    assert isinstance(reasoning.ctxs[-1].deer, DeerStats)  # the reasoning route: DEER's stats are kept
    r = await client.post("/v1/messages", json={**BASIC, "model": "pinned"})
    assert r.json()["content"] == [{"type": "text", "text": "42"}]  # not asked for: no thinking block
    assert reasoning.ctxs[-1].controls.deer.budget_tokens is None


async def test_current_sdk_fields_adaptive_and_omitted_thinking_and_output_format():
    client, ups = make()
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    req = {
        **BASIC, "model": "pinned",
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}},
        # accepted and ignored: prompt caching and account-side knobs
        "cache_control": {"type": "ephemeral"}, "service_tier": "auto", "speed": "fast", "inference_geo": "us",
    }  # fmt: skip
    r = await client.post("/v1/messages", json=req)
    assert r.status_code == 200, r.text
    assert r.json()["content"] == [
        {"type": "thinking", "thinking": "", "signature": SIGNATURE},
        {"type": "text", "text": "42"},
    ]
    sent = ups["reasoning"].calls[-1]
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    for k in ("cache_control", "service_tier", "speed", "inference_geo", "output_config", "thinking"):
        assert k not in sent
    r = await client.post("/v1/messages", json={**req, "stream": True, "thinking": {"type": "adaptive"}})
    deltas = [d["delta"]["type"] for n, d in events(r) if n == "content_block_delta"]
    assert "thinking_delta" in deltas and "signature_delta" in deltas
    r = await client.post("/v1/messages", json={**BASIC, "container": "c-1"})
    assert "containers are not supported" in assert_anthropic_error(r, 400, "invalid_request_error")


# -- streaming ----------------------------------------------------------------------


async def test_stream_event_sequence_with_thinking():
    client, _ = make()
    req = {
        **BASIC,
        "model": "pinned",
        "max_tokens": 2048,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 512},
    }
    r = await client.post("/v1/messages", json=req, headers=HEADERS)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = events(r)
    names = [n for n, _ in ev]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = ev[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["usage"]["output_tokens"] == 0
    blocks = [d for n, d in ev if n == "content_block_start"]
    assert [b["content_block"]["type"] for b in blocks] == ["thinking", "text"]
    assert [b["index"] for b in blocks] == [0, 1]
    deltas = [d["delta"] for n, d in ev if n == "content_block_delta"]
    assert "".join(x.get("thinking", "") for x in deltas if x["type"] == "thinking_delta") == "think hard"
    assert [x["signature"] for x in deltas if x["type"] == "signature_delta"] == [SIGNATURE]
    assert "".join(x.get("text", "") for x in deltas if x["type"] == "text_delta") == "42"
    assert [d["index"] for n, d in ev if n == "content_block_stop"] == [0, 1]
    # a block is stopped before the next one starts
    assert names.index("content_block_stop") < names.index(
        "content_block_start", names.index("content_block_start") + 1
    )
    final = ev[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == 3 and final["usage"]["input_tokens"] > 0


async def test_stream_without_thinking_hides_reasoning():
    client, _ = make()
    r = await client.post("/v1/messages", json={**BASIC, "model": "pinned", "stream": True})
    kinds = [d["content_block"]["type"] for n, d in events(r) if n == "content_block_start"]
    assert kinds == ["text"]


class StreamsToolCalls(FakeUpstream):
    """OpenAI's tool-call stream: id and name first, then the arguments in pieces."""

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}  # fmt: skip

        yield chunk({"role": "assistant", "content": "checking"})
        yield chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
                ]
            }
        )
        for piece in ('{"ci', 'ty": ', '"Oslo"}'):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        last = chunk({}, "tool_calls")
        last["usage"] = {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
        yield last


async def test_stream_tool_use_input_json_delta():
    client, _ = make(fast=StreamsToolCalls("fast", "fast-model"))
    r = await client.post(
        "/v1/messages",
        json={**BASIC, "stream": True, "tools": [{"name": "weather", "input_schema": {"type": "object"}}]},
    )
    ev = events(r)
    blocks = [d["content_block"] for n, d in ev if n == "content_block_start"]
    assert blocks[-1] == {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}
    parts = [
        d["delta"]["partial_json"]
        for n, d in ev
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert json.loads("".join(parts)) == {"city": "Oslo"}
    assert [d["content_block"]["type"] for n, d in ev if n == "content_block_start"] == ["text", "tool_use"]
    assert ev[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert ev[-2][1]["usage"] == {"input_tokens": 7, "output_tokens": 9}


async def test_error_mid_stream_is_an_error_event():
    client, _ = make(fast=BreaksMidStream("fast", "fast-model"))
    r = await client.post("/v1/messages", json={**BASIC, "stream": True})
    assert r.status_code == 200
    ev = events(r)
    assert ev[0][0] == "message_start"
    assert ev[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "upstream fast reset the connection"}},
    )
    assert "message_stop" not in [n for n, _ in ev]


# -- errors ---------------------------------------------------------------------------


async def test_invalid_requests_get_anthropic_errors():
    client, _ = make()
    no_max = {k: v for k, v in BASIC.items() if k != "max_tokens"}
    cases = [
        (no_max, "max_tokens"),
        ({**BASIC, "temperature": 1.5}, "temperature"),
        ({**BASIC, "messages": []}, "messages"),
        ({**BASIC, "messages": 1.5}, "messages"),  # found by the fuzz: was a 500 from the cache_control scan
        ({**BASIC, "messages": {"role": "user"}}, "messages"),
        ({**BASIC, "messages": [{"role": "system", "content": "x"}]}, "user or assistant turn"),
        ({**BASIC, "messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({**BASIC, "messages": [{"role": "user", "content": []}]}, "at least one content block"),
        ({**BASIC, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}, "base64"),
        ({**BASIC, "max_tokens": None}, "max_tokens"),
        ({**BASIC, "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "document"),
        ({**BASIC, "tools": [{"name": "f"}]}, "input_schema"),
        ({**BASIC, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tool"),
        ({**BASIC, "tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({**BASIC, "thinking": {"type": "enabled", "budget_tokens": 64}}, "budget_tokens"),
        ({**BASIC, "stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
        ({**BASIC, "frequency_penalty": 1}, "frequency_penalty"),
        ({**BASIC, "max_tokens": 0}, "max_tokens"),
    ]
    for body, needle in cases:
        r = await client.post("/v1/messages", json=body)
        assert needle in assert_anthropic_error(r, 400, "invalid_request_error"), body
    r = await client.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert_anthropic_error(r, 400, "invalid_request_error")
    r = await client.post("/v1/messages", json={**BASIC, "model": "nope"})
    assert_anthropic_error(r, 404, "not_found_error")
    r = await client.post("/v1/messages/nothing", json=BASIC)
    assert_anthropic_error(r, 404, "not_found_error")
    r = await client.get("/v1/messages")
    assert_anthropic_error(r, 405, "invalid_request_error")
    r = await client.post("/v1/messages", json={**BASIC, "messages": [{"role": "user", "content": "x" * 5000}]})
    assert_anthropic_error(r, 413, "request_too_large")  # the body limit middleware, in Anthropic's shape
    # the OpenAI routes keep the OpenAI shape
    r = await client.post(
        "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


async def test_upstream_failures_map_to_anthropic_types():
    for err, status, kind in (
        (errors.UpstreamUnavailable("down", upstream="fast"), 503, "overloaded_error"),
        (errors.UpstreamTimeout("slow", upstream="fast"), 504, "api_error"),
        (errors.UpstreamRateLimited("busy", upstream="fast"), 429, "rate_limit_error"),
    ):
        bad = FakeUpstream("fast", "fast-model", failing(err))
        client, _ = make(fast=bad, reasoning=FakeUpstream("reasoning", "r", failing(err)))
        assert_anthropic_error(await client.post("/v1/messages", json=BASIC), status, kind)


def _guarded(rpm: int | None = None) -> httpx.AsyncClient:
    s = settings(limits={"rpm": rpm} if rpm else {})
    keys = KeyStore([ApiKey(key="sk-ant-good", tenant="t1")])
    app = create_app(
        s,
        upstreams={"fast": FakeUpstream("fast", "fast-model"), "reasoning": FakeUpstream("reasoning", "r")},
        middleware=middleware(keys, Limiter(s.limits)),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")


async def test_x_api_key_on_every_route_and_auth_errors_in_anthropic_shape():
    async with _guarded() as c:
        assert_anthropic_error(await c.post("/v1/messages", json=BASIC), 401, "authentication_error")
        msg = assert_anthropic_error(
            await c.post("/v1/messages", json=BASIC, headers={"x-api-key": "sk-wrong"}), 401, "authentication_error"
        )
        assert "sk-wrong" not in msg
        r = await c.post("/v1/messages", json=BASIC, headers={"x-api-key": "sk-ant-good", **HEADERS})
        assert r.status_code == 200, r.text
        r = await c.post(
            "/v1/messages/count_tokens",
            json={"model": "auto", "messages": BASIC["messages"]},
            headers={"x-api-key": "sk-ant-good"},
        )
        assert r.status_code == 200, r.text
        chat = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        assert (
            await c.post("/v1/chat/completions", json=chat, headers={"x-api-key": "sk-ant-good"})
        ).status_code == 200
        assert (await c.get("/v1/models", headers={"x-api-key": "sk-ant-good"})).status_code == 200
        r = await c.post("/v1/chat/completions", json=chat, headers={"x-api-key": "sk-wrong"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"  # OpenAI shape there
        # a Bearer token still works, and wins over x-api-key
        r = await c.post(
            "/v1/chat/completions", json=chat, headers={"authorization": "Bearer sk-ant-good", "x-api-key": "junk"}
        )
        assert r.status_code == 200


async def test_rate_limit_error_in_anthropic_shape():
    async with _guarded(rpm=1) as c:
        h = {"x-api-key": "sk-ant-good"}
        assert (await c.post("/v1/messages", json=BASIC, headers=h)).status_code == 200
        r = await c.post("/v1/messages", json=BASIC, headers=h)
        assert_anthropic_error(r, 429, "rate_limit_error")
        assert "retry-after" in r.headers


# -- count_tokens ----------------------------------------------------------------------


async def test_count_tokens_uses_the_estimator():
    client, _ = make()
    req = {
        "model": "auto",
        "system": "be brief",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }
    r = await client.post("/v1/messages/count_tokens", json=req, headers=HEADERS)
    assert r.status_code == 200, r.text
    want = estimate_tokens(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the capital of France?"}]
    )
    assert r.json() == {"input_tokens": want}
    with_tools = {**req, "tools": [{"name": "weather", "input_schema": {"type": "object"}}]}
    assert (await client.post("/v1/messages/count_tokens", json=with_tools)).json()["input_tokens"] > want
    assert_anthropic_error(
        await client.post("/v1/messages/count_tokens", json={**req, "model": "nope"}), 404, "not_found_error"
    )
    assert_anthropic_error(
        await client.post("/v1/messages/count_tokens", json={**req, "max_tokens": 5}), 400, "invalid_request_error"
    )


async def test_the_cache_serves_both_front_ends_and_keys_on_the_thinking_budget():
    from router.cache import build_cache

    s = settings(cache={"enabled": True, "semantic": False})
    reasoning = FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="think hard"))
    app = create_app(
        s, upstreams={"fast": FakeUpstream("fast", "fast-model"), "reasoning": reasoning}, cache=build_cache(s.cache)
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")

    async def post(path: str, body: dict[str, Any]) -> httpx.Response:
        r = await client.post(path, json=body)
        await app.state.pipeline.drain()  # the cache write runs after the reply
        return r

    req = {
        **BASIC,
        "model": "pinned",
        "temperature": 0,
        "max_tokens": 200,
        "thinking": {"type": "enabled", "budget_tokens": 50},
    }
    assert (await post("/v1/messages", req)).headers["x-thinkgate-cache"] == "miss"
    r = await post("/v1/messages", req)
    assert r.headers["x-thinkgate-cache"] == "exact" and r.json()["content"][0]["type"] == "thinking"
    other = {**req, "thinking": {"type": "enabled", "budget_tokens": 60}}  # thinks for another length
    assert (await post("/v1/messages", other)).headers["x-thinkgate-cache"] == "miss"
    # the same question through OpenAI chat: one internal request, one cache
    chat = {"model": "pinned", "temperature": 0, "max_tokens": 200, "messages": BASIC["messages"]}
    r = await post("/v1/chat/completions", chat)
    assert r.headers["x-thinkgate-cache"] == "miss"  # no budget: a different request
    assert (await post("/v1/messages", {**req, "thinking": {"type": "disabled"}})).headers[
        "x-thinkgate-cache"
    ] == "exact"
    assert len(reasoning.calls) == 3


async def test_learning_shadows_messages_requests_after_the_reply(tmp_path):
    # learning's shadow job (Reply.after) runs for this front end as for chat
    from tests.router.learning.test_shadow import make as make_learning
    from tests.router.learning.test_shadow import records
    from tests.router.learning.test_shadow import settings as learning_settings

    client, ups, learner, log, _ = make_learning(tmp_path, learning_settings())
    r = await client.post("/v1/messages", json={**BASIC, "messages": [{"role": "user", "content": "What is six times seven?"}]})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "echo: What is six times seven?"
    await learner.wait_idle()
    assert len(ups["reasoning"].calls) == 1  # the route not taken, asked once
    [rec] = records(log)
    assert rec["id"] == r.headers["x-thinkgate-request-id"] and rec["source"] == "shadow"
