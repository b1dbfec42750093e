"""The Gemini API front end (/v1beta/models/...) with in-process fake upstreams: the
translation both ways, streams (SSE and JSON array), countTokens, the model list,
and Google-shaped errors from the routes and from the auth, limit and body-size
middlewares."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import errors
from router.access.auth import KeyStore
from router.access.limits import Limiter
from router.access.middleware import middleware
from router.api.gemini.request import translate
from router.api.gemini.schema import to_json_schema
from router.config import ApiKey
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeReply, FakeUpstream
from tests.router.test_app import make
from tests.router.test_app import settings as app_settings

GEN = "/v1beta/models/auto:generateContent"
STREAM = "/v1beta/models/auto:streamGenerateContent"
BASIC = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}
WEATHER = {
    "functionDeclarations": [{
        "name": "get_weather", "description": "weather by city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING", "nullable": True}},
                       "required": ["city"], "propertyOrdering": ["city"]},
    }]
}  # fmt: skip
CALL = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]


def assert_google_error(r: httpx.Response, status: int, rpc: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}, body
    assert body["error"]["code"] == status and body["error"]["status"] == rpc, body
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    return str(body["error"]["message"])


def sse_objects(r: httpx.Response) -> list[dict[str, Any]]:
    """Strict: every event is one `data: {json}` line ended by a blank line, as Google sends."""
    assert r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\r\n\r\n") if b]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), r.text
    return [json.loads(b[6:]) for b in blocks]


def text_of(objs: list[dict[str, Any]], thought: bool = False) -> str:
    return "".join(
        p.get("text", "")
        for o in objs
        for c in o.get("candidates") or []
        for p in c["content"]["parts"]
        if bool(p.get("thought")) == thought
    )


# -- translation ------------------------------------------------------------------


def test_contents_system_and_generation_config_map_to_chat():
    t = translate(
        {
            "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "be kind"}]},
            "contents": BASIC["contents"],
            "generationConfig": {"temperature": 0.2, "topP": 0.9, "topK": 20, "maxOutputTokens": 64,
                                 "stopSequences": ["END"], "candidateCount": 1, "seed": 7,
                                 "presencePenalty": 0.5, "frequencyPenalty": 0.1},
        },
        "auto",
    )  # fmt: skip
    assert t.body == {
        "model": "auto",
        "messages": [{"role": "system", "content": "be brief\nbe kind"}, {"role": "user", "content": "hi there"}],
        "temperature": 0.2, "top_p": 0.9, "top_k": 20, "max_tokens": 64, "stop": ["END"], "n": 1, "seed": 7,
        "presence_penalty": 0.5, "frequency_penalty": 0.1,
    }  # fmt: skip
    assert t.dropped == [] and t.budget_tokens is None and not t.include_thoughts


def test_snake_case_fields_are_accepted_like_camel_case():
    t = translate({"contents": BASIC["contents"], "system_instruction": "sys", "generation_config": {"max_output_tokens": 9}}, "m")
    assert t.body["messages"][0] == {"role": "system", "content": "sys"} and t.body["max_tokens"] == 9


def test_function_call_round_trip_maps_ids_and_names():
    contents = [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"text": "let me look", "thought": True, "thoughtSignature": "c2ln"},
                                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                                    {"functionCall": {"id": "abc", "name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "abc", "name": "get_time", "response": {"output": "noon"}}},
                                   {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                                   {"text": "and tomorrow?"}]},
    ]  # fmt: skip
    msgs = translate({"contents": contents, "tools": [WEATHER]}, "auto").body["messages"]
    assert msgs[1] == {
        "role": "assistant",
        "content": "",  # the thought is not sent back upstream
        "tool_calls": [
            {"id": "call_1_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "abc", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    # tool results right after the call (matched by id, else by name), then the user's text
    assert msgs[2] == {"role": "tool", "tool_call_id": "abc", "content": '{"output": "noon"}'}
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_1_1", "content": '{"output": "sunny"}'}
    assert msgs[4] == {"role": "user", "content": "and tomorrow?"}


def test_function_response_without_a_call_is_refused():
    contents = [{"role": "user", "parts": [{"functionResponse": {"name": "x", "response": {}}}]}]
    with pytest.raises(errors.InvalidRequest, match="answers no functionCall"):
        translate({"contents": contents}, "auto")


def test_tools_schema_conversion_hosted_tools_dropped_and_tool_config():
    t = translate(
        {
            **BASIC,
            "tools": [WEATHER, {"googleSearch": {}},
                      {"functionDeclarations": [{"name": "raw", "parametersJsonSchema": {"type": "object", "properties": {"q": {"type": ["string", "null"]}}}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        },
        "auto",
    )  # fmt: skip
    assert t.body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": ["string", "null"]}}, "required": ["city"]}}}]  # fmt: skip
    assert t.body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert t.dropped == ["safetySettings", "tools[1].googleSearch"]
    auto = translate({**BASIC, "tools": [WEATHER], "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}, "a")
    assert auto.body["tool_choice"] == "none"


def test_schema_conversion_nests_and_refuses_unknown_types():
    s = to_json_schema({"type": "ARRAY", "items": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "format": "int32"}},
                        "anyOf": [{"type": "STRING"}]}, "example": [1]}, "p")  # fmt: skip
    assert s == {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer", "format": "int32"}},
                 "anyOf": [{"type": "string"}]}}  # fmt: skip
    with pytest.raises(errors.InvalidRequest, match="unknown type"):
        to_json_schema({"type": "BLOB"}, "p")


def test_json_output_thinking_and_inline_data():
    png = base64.b64encode(b"\x89PNG").decode()
    txt = base64.b64encode("note ✓".encode()).decode()
    t = translate(
        {
            "contents": [{"parts": [{"text": "look"}, {"inlineData": {"mimeType": "image/png", "data": png}},
                                    {"inlineData": {"mimeType": "text/plain", "data": txt}}]}],
            "generationConfig": {"responseMimeType": "application/json",
                                 "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
                                 "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 300, "thinkingLevel": "LOW"},
                                 "mediaResolution": "MEDIA_RESOLUTION_LOW"},
        },
        "auto",
    )  # fmt: skip
    assert t.body["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "text", "text": "note ✓"},
    ]
    assert t.body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "response", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}  # fmt: skip
    assert t.include_thoughts and t.budget_tokens == 300 and t.body["reasoning_effort"] == "low"
    assert t.dropped == ["generationConfig.mediaResolution"]
    off = translate({**BASIC, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}, "a")
    assert off.body["reasoning_effort"] == "minimal" and off.budget_tokens is None


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({**BASIC, "cachedContent": "cachedContents/x"}, "cachedContent"),
        ({**BASIC, "generationConfig": {"responseModalities": ["IMAGE"]}}, "only TEXT"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "application/pdf", "data": "AAAA"}}]}]}, "not supported"),
        ({"contents": [{"parts": [{"fileData": {"fileUri": "files/abc", "mimeType": "image/png"}}]}]}, "fileData"),
        ({**BASIC, "generationConfig": {"bogus": 1}}, 'Unknown name "bogus"'),
        ({**BASIC, "bogus": 1}, 'Unknown name "bogus"'),
        ({**BASIC, "generationConfig": {"temperature": 3}}, "between 0 and 2"),
        ({**BASIC, "generationConfig": {"stopSequences": ["a"] * 5}}, "at most 4"),
        ({**BASIC, "generationConfig": {"responseMimeType": "text/x.enum"}}, "not supported"),
        ({"contents": []}, "non-empty"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "role"),
        ({"contents": [{"role": "model", "parts": [{"text": "t", "thought": True}]}]}, "no turn has content"),
    ],
)
def test_refused_with_a_clear_message(body: dict[str, Any], match: str):
    with pytest.raises(errors.InvalidRequest, match=match):
        translate(body, "auto")


# -- HTTP: replies ------------------------------------------------------------------


async def test_generate_content_reply_usage_and_dropped_in_record():
    records: list[dict[str, Any]] = []

    class Sink:
        async def append(self, d: Any) -> None:
            records.append(d.to_dict())

    client, ups = make(log_sink=Sink())
    r = await client.post(GEN, json={**BASIC, "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["candidates"] == [{"content": {"role": "model", "parts": [{"text": "echo: hi there"}]},
                                   "finishReason": "STOP", "index": 0}]  # fmt: skip
    u = body["usageMetadata"]
    assert u["candidatesTokenCount"] == 3 and u["totalTokenCount"] == u["promptTokenCount"] + 3
    assert body["modelVersion"] == "fast-model" and body["responseId"]
    assert ups["fast"].calls[0]["messages"] == [{"role": "user", "content": "hi there"}]
    assert r.headers["x-thinkgate-route"] == "fast" and r.headers["x-thinkgate-dropped"] == "safetySettings"
    await asyncio.sleep(0.01)  # the record is written after the reply
    assert records and records[-1]["dropped"] == ["safetySettings"]


async def test_function_call_reply_and_thoughts_only_when_asked():
    fast = FakeUpstream("fast", "fast-model", lambda b: FakeReply("", reasoning="hmm", tool_calls=CALL))
    client, ups = make(fast=fast)
    r = await client.post(GEN, json={**BASIC, "tools": [WEATHER]})
    parts = r.json()["candidates"][0]["content"]["parts"]
    assert parts == [{"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}}]
    assert r.json()["candidates"][0]["finishReason"] == "STOP"
    assert ups["fast"].calls[0]["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] == ["string", "null"]
    r = await client.post(GEN, json={**BASIC, "tools": [WEATHER], "generationConfig": {"thinkingConfig": {"includeThoughts": True}}})
    assert r.json()["candidates"][0]["content"]["parts"][0] == {"text": "hmm", "thought": True}


async def test_stream_sse_text_thoughts_and_usage_last():
    client, _ = make()
    body = {**BASIC, "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    r = await client.post("/v1beta/models/pinned:streamGenerateContent?alt=sse", json=body)
    assert r.status_code == 200, r.text
    objs = sse_objects(r)
    assert text_of(objs) == "42" and text_of(objs, thought=True) == "think hard"
    assert all("usageMetadata" not in o for o in objs[:-1]) and objs[-1]["usageMetadata"]["candidatesTokenCount"] > 0
    assert objs[-1]["candidates"][0]["finishReason"] == "STOP"
    assert r.headers["x-thinkgate-route"] == "reasoning"


class StreamsToolCalls(FakeUpstream):
    """Streams a tool call as OpenAI servers do: its name first, then its arguments in pieces."""

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(body)
        base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": self.model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield chunk({"role": "assistant", "content": ""})
        yield chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]})  # fmt: skip
        args = CALL[0]["function"]["arguments"]
        for i in range(0, len(args), 4):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 4]}}]})
        yield chunk({}, "tool_calls")
        yield {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}


async def test_stream_function_call_goes_out_whole():
    client, _ = make(fast=StreamsToolCalls("fast", "fast-model"))
    objs = sse_objects(await client.post(STREAM + "?alt=sse", json={**BASIC, "tools": [WEATHER]}))
    calls = [p["functionCall"] for o in objs for c in o["candidates"] for p in c["content"]["parts"] if "functionCall" in p]
    assert calls == [{"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}]
    assert objs[-1]["usageMetadata"] == {"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12}


async def test_stream_without_alt_sse_is_one_json_array():
    client, _ = make()
    r = await client.post(STREAM, json=BASIC)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    objs = r.json()
    assert isinstance(objs, list) and text_of(objs) == "echo: hi there" and "usageMetadata" in objs[-1]


async def test_upstream_failure_mid_stream_is_a_google_error_event():
    from tests.router.api.test_anthropic import BreaksMidStream

    client, _ = make(fast=BreaksMidStream("fast", "fast-model"))
    objs = sse_objects(await client.post(STREAM + "?alt=sse", json=BASIC))
    assert objs[-1]["error"]["status"] == "UNAVAILABLE" and objs[-1]["error"]["code"] == 503


async def test_count_tokens_and_model_list():
    client, _ = make()
    r = await client.post("/v1beta/models/auto:countTokens", json=BASIC)
    assert r.status_code == 200 and r.json()["totalTokens"] > 0
    wrapped = await client.post("/v1beta/models/auto:countTokens", json={"generateContentRequest": {"model": "models/auto", **BASIC}})
    assert wrapped.json() == r.json()
    names = [m["name"] for m in (await client.get("/v1beta/models")).json()["models"]]
    assert "models/auto" in names and "models/pinned" in names
    one = (await client.get("/v1beta/models/auto")).json()
    assert one["name"] == "models/auto" and "generateContent" in one["supportedGenerationMethods"]
    assert_google_error(await client.get("/v1beta/models/nope"), 404, "NOT_FOUND")
    assert_google_error(await client.post("/v1beta/models/nope:countTokens", json=BASIC), 404, "NOT_FOUND")


# -- HTTP: errors in Google's shape ----------------------------------------------------


async def test_errors_are_google_shaped():
    client, _ = make()
    assert "Unknown name" in assert_google_error(await client.post(GEN, json={**BASIC, "x": 1}), 400, "INVALID_ARGUMENT")
    assert_google_error(await client.post(GEN, content=b"{nope"), 400, "INVALID_ARGUMENT")
    assert_google_error(await client.post("/v1beta/models/nope:generateContent", json=BASIC), 404, "NOT_FOUND")
    assert_google_error(await client.post("/v1beta/models/auto:embedText", json=BASIC), 404, "NOT_FOUND")
    big = {"contents": [{"parts": [{"text": "x" * 5000}]}]}  # the test settings' body limit is 4096 bytes
    assert_google_error(await client.post(GEN, json=big), 413, "INVALID_ARGUMENT")


async def test_auth_by_goog_header_and_key_query_and_rate_limits():
    s = app_settings(limits={"rpm": 2})
    keys = KeyStore([ApiKey(key="k-123", tenant="t")])
    client, _ = make(s, middleware=middleware(keys, Limiter(s.limits)))
    assert_google_error(await client.post(GEN, json=BASIC), 401, "UNAUTHENTICATED")
    assert_google_error(await client.post(GEN, json=BASIC, headers={"x-goog-api-key": "wrong"}), 401, "UNAUTHENTICATED")
    assert (await client.post(GEN, json=BASIC, headers={"x-goog-api-key": "k-123"})).status_code == 200
    assert (await client.post(GEN + "?key=k-123", json=BASIC)).status_code == 200
    # the third request in the minute is limited, and the 429 is Google's RESOURCE_EXHAUSTED
    assert_google_error(await client.post(GEN + "?key=k-123", json=BASIC), 429, "RESOURCE_EXHAUSTED")
    # ?key= is Google's form only: the OpenAI routes do not take a key from the URL
    r = await client.post("/v1/chat/completions?key=k-123", json={"model": "auto", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401 and "type" in r.json()["error"]


async def test_openapi_lists_the_gemini_paths():
    client, _ = make()
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/v1beta/models/{model}:generateContent" in paths and "/v1beta/models" in paths


async def test_v1_paths_serve_google_genai_3_and_leave_openai_model_list_alone():
    client, _ = make()
    r = await client.post("/v1/models/auto:generateContent", json=BASIC)
    assert r.status_code == 200 and r.json()["candidates"][0]["content"]["parts"] == [{"text": "echo: hi there"}]
    assert_google_error(await client.post("/v1/models/auto:generateContent", json={"contents": []}), 400, "INVALID_ARGUMENT")
    assert (await client.get("/v1/models")).json()["object"] == "list"  # still OpenAI's


# -- fuzz: any JSON is a translation or a clear 400, never a crash ------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(["text", "thought", "functionCall", "functionResponse", "inlineData", "fileData", "role",
                         "parts", "name", "args", "id", "response", "mimeType", "data", "type", "properties"])  # fmt: skip
_shaped = st.recursive(
    _json, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4), max_leaves=25
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.fixed_dictionaries({}, optional={
    "contents": st.lists(_shaped, max_size=3), "systemInstruction": _shaped, "tools": st.lists(_shaped, max_size=2),
    "toolConfig": _shaped, "generationConfig": st.dictionaries(st.sampled_from(
        ["temperature", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "responseMimeType",
         "responseSchema", "thinkingConfig", "responseModalities"]), _json, max_size=3),
}))  # fmt: skip
def test_translate_never_raises_anything_but_a_400(body: dict[str, Any]):
    try:
        t = translate(body, "auto")
    except errors.InvalidRequest as e:
        assert e.status == 400 and e.message
        return
    json.dumps(t.body)  # what goes upstream is JSON
    assert t.body["messages"]


async def test_token_limits_settle_on_gemini_usage_metadata():
    """The limiter's token count is corrected from the reply's usageMetadata, streamed or not."""
    s = app_settings(limits={"tpm": 100000})
    keys = KeyStore([ApiKey(key="k-1", tenant="t")])
    limiter = Limiter(s.limits)
    settled: list[tuple[int, int]] = []
    real = limiter.settle

    async def settle(caller: Any, est: int, total: int) -> None:
        settled.append((est, total))
        await real(caller, est, total)

    limiter.settle = settle  # type: ignore[method-assign]
    client, _ = make(s, middleware=middleware(keys, limiter))
    h = {"x-goog-api-key": "k-1"}
    r1 = await client.post(GEN, json=BASIC, headers=h)
    r2 = await client.post(STREAM + "?alt=sse", json=BASIC, headers=h)
    assert r1.status_code == r2.status_code == 200
    totals = [r1.json()["usageMetadata"]["totalTokenCount"], sse_objects(r2)[-1]["usageMetadata"]["totalTokenCount"]]
    assert [t for _, t in settled] == totals


async def test_limits_are_said_with_gemini_names_and_unknown_tools_refused():
    client, _ = make(app_settings(limits={"max_tokens": 100, "max_n": 2, "over_max_tokens": "refuse"}))
    body = {**BASIC, "generationConfig": {"maxOutputTokens": 101}}
    msg = assert_google_error(await client.post(GEN, json=body), 400, "INVALID_ARGUMENT")
    assert "generationConfig.maxOutputTokens" in msg and "100" in msg
    # by default a larger request is clamped, and said so (limits.over_max_tokens: clamp)
    clamping, _ = make(app_settings(limits={"max_tokens": 100}))
    r = await clamping.post(GEN, json=body)
    assert r.status_code == 200 and "101 -> 100" in r.headers["x-thinkgate-clamped"], r.text
    body = {**BASIC, "generationConfig": {"candidateCount": 3}}
    assert "candidateCount" in assert_google_error(await client.post(GEN, json=body), 400, "INVALID_ARGUMENT")
    # a tool kind nobody knows is an error, not silently dropped (and never a header full of it)
    r = await client.post(GEN, json={**BASIC, "tools": [{"ключ\n": {}}]})
    assert "Unknown name" in assert_google_error(r, 400, "INVALID_ARGUMENT")
    r = await client.post(GEN, json={**BASIC, "tools": [{"google_search": {}}]})
    assert r.status_code == 200 and r.headers["x-thinkgate-dropped"] == "tools[0].googleSearch"
