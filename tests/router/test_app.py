"""The HTTP surface with in-process fake upstreams: every endpoint, SSE framing,
error shapes, decision headers, controls."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from router import config, errors
from router.app import create_app
from router.upstreams.fake import FakeReply, FakeUpstream, failing


def settings(**over: Any) -> config.Settings:
    data: dict[str, Any] = {
        "models": {
            "fast": {"provider": "fake", "model": "fast-model", "price": {"input": 1, "output": 2}},
            "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True, "price": {"input": 10, "output": 40}},
        },
        "routes": {"auto": {}, "pinned": {"pin": "reasoning"}},
        "selfref": {"enabled": False},
        "server": {"max_body_bytes": 4096},
    }
    data.update(over)
    return config.from_dict(data)


def make(s: config.Settings | None = None, fast: FakeUpstream | None = None, reasoning: FakeUpstream | None = None, **kw: Any):
    s = s or settings()
    ups = {
        "fast": fast or FakeUpstream("fast", "fast-model"),
        "reasoning": reasoning or FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="think hard")),
    }
    app = create_app(s, upstreams=ups, **kw)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")
    return client, ups


CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi there"}]}


def assert_openai_error(r: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] and "Traceback" not in err["message"]
    if param is not None:
        assert err["param"] == param
    return err


async def test_chat_non_streaming_defaults_to_fast_route():
    client, ups = make()
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "echo: hi there"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert r.headers["x-thinkgate-route"] == "fast"
    assert r.headers["x-thinkgate-escalated"] == "false"
    assert r.headers["x-thinkgate-cache"] == "miss"
    assert float(r.headers["x-thinkgate-overhead-ms"]) >= 0
    assert ups["fast"].calls[0]["model"] == "fast-model"


async def test_multi_turn_and_passthrough_fields_reach_the_upstream():
    client, ups = make()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    req = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": [{"type": "text", "text": "c"}]},
        ],
        "tools": tools,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "temperature": 0,
        "seed": 7,
    }
    r = await client.post("/v1/chat/completions", json=req)
    assert r.status_code == 200
    sent = ups["fast"].calls[0]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto" and sent["response_format"] == {"type": "json_object"}
    assert len(sent["messages"]) == 4 and sent["seed"] == 7
    assert r.json()["choices"][0]["message"]["content"] == "echo: c"


async def test_tool_calls_come_back():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    fast = FakeUpstream("fast", "fast-model", lambda b: FakeReply("", tool_calls=[call]))
    client, _ = make(fast=fast)
    r = await client.post("/v1/chat/completions", json=CHAT)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["tool_calls"] == [call]


def sse_events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


async def test_streaming_framing_and_usage():
    client, _ = make()
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-thinkgate-route"] == "fast"
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: hi there"
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == [] and usage_chunks[0] is chunks[-1]
    assert usage_chunks[0]["usage"]["completion_tokens"] > 0


async def test_streaming_without_include_usage_sends_no_usage():
    client, _ = make()
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    chunks = sse_events(r.text)[:-1]
    assert not any("usage" in c for c in chunks)


async def test_reasoning_stream_carries_reasoning_content():
    client, _ = make()
    r = await client.post(
        "/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-thinkgate-force-route": "reasoning"}
    )
    assert r.headers["x-thinkgate-route"] == "reasoning"
    chunks = sse_events(r.text)[:-1]
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks)
    answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert reasoning == "think hard" and answer == "42"


async def test_completions_endpoint():
    client, ups = make()
    r = await client.post("/v1/completions", json={"model": "auto", "prompt": "say x", "max_tokens": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "echo: say x"
    assert ups["fast"].calls[0]["prompt"] == "say x"
    r = await client.post("/v1/completions", json={"model": "auto", "prompt": "say x", "stream": True})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in events[:-1] if c["choices"]) == "echo: say x"


async def test_models_lists_aliases_and_concrete_models():
    client, _ = make()
    r = await client.get("/v1/models")
    ids = [m["id"] for m in r.json()["data"]]
    assert ids[0] == "auto"
    assert {"auto", "pinned", "fast", "reasoning", "fast-model", "reasoning-model"} <= set(ids)
    assert all(m["object"] == "model" for m in r.json()["data"])


async def test_pinned_alias_and_concrete_model_names():
    client, ups = make()
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "pinned"})
    assert r.headers["x-thinkgate-route"] == "reasoning"
    assert r.json()["choices"][0]["message"]["reasoning_content"] == "think hard"
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "fast-model"})
    assert r.headers["x-thinkgate-route"] == "fast"


async def test_health_and_ready():
    client, _ = make()
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["upstream:fast"]["ok"] is True


async def test_debug_control_adds_the_decision():
    client, _ = make()
    r = await client.post("/v1/chat/completions", json={**CHAT, "thinkgate": {"debug": True, "force_route": "reasoning"}})
    d = r.json()["thinkgate"]
    assert d["route"] == "reasoning" and d["reason"] == "forced" and d["upstream_model"] == "reasoning-model"


@pytest.mark.parametrize(
    "body,param,code",
    [
        (b"{not json", None, "invalid_json"),
        (b"[1,2]", None, "invalid_json"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model", "missing_field"),
        (json.dumps({"model": "auto"}).encode(), "messages", "missing_field"),
        (json.dumps({"model": "auto", "messages": []}).encode(), "messages", "invalid_value"),
        (json.dumps({"model": "auto", "messages": "hi"}).encode(), "messages", "invalid_type"),
        (json.dumps({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}).encode(), "messages[0].role", "invalid_value"),
        (json.dumps({"model": "auto", "messages": [{"role": "user", "content": 5}]}).encode(), "messages[0].content", "invalid_type"),
        (json.dumps({**CHAT, "temperature": "hot"}).encode(), "temperature", "invalid_type"),
        (json.dumps({**CHAT, "temperature": 3}).encode(), "temperature", "invalid_value"),
        (json.dumps({**CHAT, "max_tokens": 0}).encode(), "max_tokens", "invalid_value"),
        (json.dumps({**CHAT, "stream": "yes"}).encode(), "stream", "invalid_type"),
        (json.dumps({**CHAT, "n": 0}).encode(), "n", "invalid_value"),
        (json.dumps({**CHAT, "frobnicate": 1}).encode(), "frobnicate", "unsupported_parameter"),
        (json.dumps({**CHAT, "audio": {}}).encode(), "audio", "unsupported_parameter"),
        (json.dumps({**CHAT, "thinkgate": {"force_route": "slow"}}).encode(), "x-thinkgate-force-route", "invalid_value"),
    ],
)
async def test_bad_input_gets_openai_shaped_400(body: bytes, param: str | None, code: str):
    client, ups = make()
    r = await client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    err = assert_openai_error(r, 400, param)
    assert err["code"] == code
    assert err["type"] == "invalid_request_error"
    assert not ups["fast"].calls


async def test_bad_control_headers():
    client, _ = make()
    for name, value in [
        ("x-thinkgate-force-route", "sideways"),
        ("x-thinkgate-cache-control", "forever"),
        ("x-thinkgate-deer", "maybe"),
        ("x-thinkgate-selfref-threshold", "abc"),
    ]:
        r = await client.post("/v1/chat/completions", json=CHAT, headers={name: value})
        assert_openai_error(r, 400, name if name != "x-thinkgate-cache-control" else None)


async def test_unknown_model_is_404():
    client, _ = make()
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-17"})
    err = assert_openai_error(r, 404, "model")
    assert err["code"] == "model_not_found" and "auto" in err["message"]


async def test_body_over_limit_is_413():
    client, ups = make()
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 10_000}]}
    r = await client.post("/v1/chat/completions", json=big)
    assert_openai_error(r, 413)
    assert not ups["fast"].calls


async def test_unknown_path_and_method():
    client, _ = make()
    assert_openai_error(await client.get("/v2/nothing"), 404)
    assert_openai_error(await client.get("/v1/chat/completions"), 405)


async def test_upstream_failure_falls_back_and_is_recorded():
    fast = FakeUpstream("fast", "fast-model", failing(errors.UpstreamUnavailable("boom", upstream="fast")))
    client, ups = make(fast=fast)
    r = await client.post("/v1/chat/completions", json={**CHAT, "thinkgate": {"debug": True}})
    assert r.status_code == 200
    assert r.headers["x-thinkgate-route"] == "reasoning"
    assert r.headers["x-thinkgate-fallback"] == "fast"
    assert r.json()["thinkgate"]["reason"] == "fallback"


async def test_no_route_can_answer_gives_clean_503():
    bad = failing(errors.UpstreamUnavailable("down", upstream="x"))
    client, _ = make(fast=FakeUpstream("fast", "f", bad), reasoning=FakeUpstream("reasoning", "r", bad))
    err = assert_openai_error(await client.post("/v1/chat/completions", json=CHAT), 503)
    assert err["type"] == "upstream_error"
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert_openai_error(r, 503)


async def test_upstream_rejection_is_not_retried_elsewhere():
    fast = FakeUpstream("fast", "f", failing(errors.UpstreamRejected("context too long", upstream="fast")))
    client, ups = make(fast=fast)
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert_openai_error(r, 400)
    assert not ups["reasoning"].calls


class _Sink:
    def __init__(self) -> None:
        self.records: list[Any] = []

    async def append(self, d: Any) -> None:
        self.records.append(d)


async def test_every_request_is_logged_once_including_errors_and_streams():
    sink = _Sink()
    client, _ = make(log_sink=sink)
    await client.post("/v1/chat/completions", json=CHAT)
    await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    await client.aclose()
    import asyncio

    await asyncio.sleep(0.01)
    assert [d.status for d in sink.records] == [200, 200, 404]
    assert sink.records[1].stream and sink.records[1].completion_tokens > 0
    assert sink.records[0].cost > 0 and sink.records[0].baseline_cost > sink.records[0].cost


def test_selfref_escalates_low_confidence_and_keeps_one_answer():
    s = settings(selfref={"enabled": True, "mode": "mean_logprob", "threshold": 0.5})
    low = FakeUpstream("fast", "fast-model", lambda b: FakeReply("maybe 7", token_prob=0.2))
    import asyncio

    async def run() -> None:
        client, ups = make(s, fast=low)
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.headers["x-thinkgate-escalated"] == "true"
        assert r.headers["x-thinkgate-route"] == "reasoning"
        assert float(r.headers["x-thinkgate-confidence"]) == pytest.approx(0.2, abs=1e-3)
        assert r.json()["choices"][0]["message"]["content"] == "42"
        # the fast call asked for logprobs; the client did not, so it gets none
        assert ups["fast"].calls[0]["logprobs"] is True
        r = await client.post("/v1/chat/completions", json=CHAT, headers={"x-thinkgate-selfref-threshold": "0"})
        assert r.headers["x-thinkgate-escalated"] == "false"
        assert r.json()["choices"][0]["logprobs"] is None
        r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        chunks = sse_events(r.text)[:-1]
        assert r.headers["x-thinkgate-escalated"] == "true"
        answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert answer == "42"  # the fast answer was buffered, never shown

    asyncio.run(run())
