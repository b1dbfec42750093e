"""The Responses API front end with in-process fakes: request translation (what
reaches the upstream), the response object and the typed event stream (each
checked against the openai SDK's own pydantic models), the response store and
previous_response_id, and errors in OpenAI's shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter

from router import config, errors
from router.access.auth import KeyStore
from router.access.limits import Limiter
from router.access.middleware import middleware
from router.app import create_app
from router.cache import build_cache
from router.cache.stored_responses import MemoryResponseStore, StoreUnavailable
from router.upstreams.fake import FakeReply, FakeUpstream
from router.upstreams.user_field import hashed
from tests.router.test_app import assert_openai_error, make, settings

EVENT = TypeAdapter(ResponseStreamEvent)
ITEM = TypeAdapter(ResponseItem)


def valid_response(body: dict[str, Any]) -> Response:
    # validated, not constructed: the SDK's model must accept every field as sent
    return Response.model_validate(body, strict=False)


def sse_events(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        ev = json.loads(lines[1][6:])
        assert ev["type"] == lines[0][7:]
        EVENT.validate_python(ev)
        out.append(ev)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


class Scripted:
    """An upstream that streams the given chunk deltas (tool calls included), then
    optionally fails; `complete` answers with the folded message."""

    def __init__(
        self,
        deltas: list[dict[str, Any]],
        finish: str = "stop",
        fail: errors.UpstreamError | None = None,
        model: str = "fast-model",
    ) -> None:
        self.name, self.model = "fast", model
        self.deltas, self.finish, self.fail = deltas, finish, fail
        self.calls: list[dict[str, Any]] = []

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}  # fmt: skip

    async def stream(self, body: dict[str, Any], ctx: Any) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(body)
        yield self._chunk({"role": "assistant", "content": ""})
        for d in self.deltas:
            yield self._chunk(d)
        if self.fail is not None:
            raise self.fail
        last = self._chunk({}, self.finish)
        last["usage"] = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
        yield last

    async def complete(self, body: dict[str, Any], ctx: Any) -> dict[str, Any]:
        from router.pipeline.replies import assemble

        chunks = [c async for c in self.stream(body, ctx)]
        return assemble(chunks)

    async def ready(self) -> dict[str, Any]:
        return {"ok": True}


TOOL_DELTAS = [
    {"content": "Let me check."},
    {
        "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ]
    },
    {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    {
        "tool_calls": [
            {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        ]
    },
]


# -- requests in ------------------------------------------------------------------------------


async def test_string_input_with_instructions():
    client, ups = make()
    r = await client.post("/v1/responses", json={"model": "auto", "input": "hi there", "instructions": "be brief"})
    assert r.status_code == 200, r.text
    body = r.json()
    resp = valid_response(body)
    assert body["id"].startswith("resp_") and body["object"] == "response" and body["status"] == "completed"
    assert resp.output_text == "echo: hi there"
    assert [i["type"] for i in body["output"]] == ["message"]
    u = body["usage"]
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"] and u["output_tokens"] > 0
    assert u["output_tokens_details"]["reasoning_tokens"] == 0
    assert ups["fast"].calls[-1]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},
    ]
    assert r.headers["x-thinkgate-route"] == "fast" and "x-thinkgate-request-id" in r.headers


async def test_item_list_becomes_chat_messages_and_reasoning_is_not_forwarded():
    client, ups = make()
    items = [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "SECRET THOUGHT"}],
         "content": [{"type": "reasoning_text", "text": "SECRET THOUGHT"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"c":"P"}'},
        {"type": "function_call", "call_id": "c2", "name": "t", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "and "}, {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
    ]  # fmt: skip
    r = await client.post("/v1/responses", json={"model": "auto", "input": items})
    assert r.status_code == 200, r.text
    sent = ups["fast"].calls[-1]["messages"]
    assert "SECRET THOUGHT" not in json.dumps(sent)
    assert sent == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "checking", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"c":"P"}'}},
            {"id": "c2", "type": "function", "function": {"name": "t", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        {"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ]  # fmt: skip


async def test_parameters_are_translated_to_chat_fields():
    client, ups = make()
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    req = {
        "model": "auto",
        "input": "x",
        "tools": [
            {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True}
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
        "max_output_tokens": 33,
        "reasoning": {"effort": "low"},
        "temperature": 0.5,
        "top_p": 0.9,
        "metadata": {"k": "v"},
        "user": "u1",
        "store": False,
        "include": ["reasoning.encrypted_content"],
    }
    r = await client.post("/v1/responses", json=req)
    assert r.status_code == 200, r.text
    sent = ups["fast"].calls[-1]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert sent["max_tokens"] == 33 and sent["reasoning_effort"] == "low"
    assert sent["temperature"] == 0.5 and sent["top_p"] == 0.9 and sent["user"] == hashed("u1", "thinkgate")  # server.upstream_user: hashed by default
    for absent in ("metadata", "store", "include", "input", "instructions", "text", "max_output_tokens", "reasoning"):
        assert absent not in sent
    body = r.json()
    valid_response(body)
    assert body["metadata"] == {"k": "v"} and body["tools"] == req["tools"] and body["text"]["format"]["name"] == "out"
    assert body["max_output_tokens"] == 33 and body["parallel_tool_calls"] is False and body["store"] is False


@pytest.mark.parametrize(
    "patch, param",
    [
        ({"input": 3}, "input"),
        ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
        ({"input": [{"type": "web_search_call", "id": "w"}]}, "input[0].type"),
        ({"input": []}, "input"),
        ({"tools": [{"type": "custom", "name": "patch"}]}, "tools[0].type"),
        ({"tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "web_search"}]}]}, "tools[0].tools[0].type"),
        ({"tools": [{"type": "function", "name": "f"}, {"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "f"}]}]}, "tools[1].tools[0].name"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": 10**9}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"model": ""}, "model"),
        ({"thinkgate": {"nope": 1}}, "thinkgate.nope"),
    ],
)
async def test_bad_requests_are_openai_shaped_400s(patch: dict[str, Any], param: str):
    client, ups = make()
    r = await client.post("/v1/responses", json={"model": "auto", "input": "x", **patch})
    assert_openai_error(r, 400, param)
    assert ups["fast"].calls == []


async def test_missing_fields_invalid_json_unknown_model():
    client, _ = make()
    assert_openai_error(await client.post("/v1/responses", json={"model": "auto"}), 400, "input")
    assert_openai_error(await client.post("/v1/responses", json={"input": "x"}), 400, "model")
    assert_openai_error(await client.post("/v1/responses", content=b"{nope"), 400)
    assert_openai_error(await client.post("/v1/responses", content=b"[1]"), 400)
    assert_openai_error(await client.post("/v1/responses", json={"model": "nope", "input": "x"}), 404, "model")


# -- the response out ---------------------------------------------------------------------------


async def test_reasoning_route_gives_a_reasoning_item_then_the_message():
    client, _ = make()
    r = await client.post("/v1/responses", json={"model": "pinned", "input": "q"})
    body = r.json()
    valid_response(body)
    assert [i["type"] for i in body["output"]] == ["reasoning", "message"]
    rs = body["output"][0]
    assert rs["content"] == [{"type": "reasoning_text", "text": "think hard"}] and rs["summary"] == []
    assert body["output"][1]["content"][0]["text"] == "42"
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    assert r.headers["x-thinkgate-route"] == "reasoning"
    r = await client.post("/v1/responses", json={"model": "pinned", "input": "q", "reasoning": {"summary": "auto"}})
    assert r.json()["output"][0]["summary"] == [{"type": "summary_text", "text": "think hard"}]


async def test_tool_calls_become_function_call_items():
    calls = [{"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    fast = FakeUpstream("fast", "fast-model", lambda b: FakeReply("", tool_calls=calls))
    client, _ = make(fast=fast)
    body = (
        await client.post(
            "/v1/responses",
            json={"model": "auto", "input": "w?", "tools": [{"type": "function", "name": "get_weather"}]},
        )
    ).json()
    resp = valid_response(body)
    assert [i["type"] for i in body["output"]] == ["function_call"]
    fc = resp.output[0]
    assert (
        fc.type == "function_call"
        and fc.call_id == "call_9"
        and fc.name == "get_weather"
        and fc.arguments == '{"city":"Paris"}'
    )
    assert fc.id.startswith("fc_")


async def test_length_is_incomplete_with_details():
    fast = FakeUpstream("fast", "fast-model", lambda b: FakeReply("cut", finish_reason="length"))
    client, _ = make(fast=fast)
    body = (await client.post("/v1/responses", json={"model": "auto", "input": "x", "max_output_tokens": 1})).json()
    valid_response(body)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}


# -- streaming ------------------------------------------------------------------------------------


async def test_stream_text_events_in_order():
    client, _ = make()
    r = await client.post("/v1/responses", json={"model": "auto", "input": "a b c", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-thinkgate-route"] == "fast"
    evs = sse_events(r.text)
    types = [e["type"] for e in evs]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta")
    assert deltas == "echo: a b c"
    final = evs[-1]["response"]
    valid_response(final)
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == deltas
    assert final["usage"]["output_tokens"] > 0 and final["model"] == "fast-model"
    assert evs[0]["response"]["id"] == final["id"]


async def test_stream_reasoning_then_text():
    client, _ = make()
    evs = sse_events((await client.post("/v1/responses", json={"model": "pinned", "input": "q", "stream": True})).text)
    types = [e["type"] for e in evs]
    assert "response.reasoning_text.delta" in types and "response.reasoning_text.done" in types
    assert types.index("response.reasoning_text.done") < types.index("response.output_text.delta")
    final = evs[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"][0]["text"] == "think hard"
    assert "".join(e["delta"] for e in evs if e["type"] == "response.reasoning_text.delta") == "think hard"


async def test_stream_reasoning_summary_events():
    client, _ = make()
    body = {"model": "pinned", "input": "q", "stream": True, "reasoning": {"summary": "auto"}}
    evs = sse_events((await client.post("/v1/responses", json=body)).text)
    for e in evs:
        EVENT.validate_python(e)  # each event is one the openai SDK parses
    summary = [e for e in evs if e["type"].startswith("response.reasoning_summary")]
    assert [e["type"] for e in summary] == [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    rs_id = evs[-1]["response"]["output"][0]["id"]
    assert all(e["item_id"] == rs_id and e["output_index"] == 0 and e["summary_index"] == 0 for e in summary)
    assert summary[1]["delta"] == summary[2]["text"] == summary[3]["part"]["text"] == "think hard"
    assert evs[-1]["response"]["output"][0]["summary"] == [{"type": "summary_text", "text": "think hard"}]
    seqs = [e["sequence_number"] for e in evs]
    assert seqs == list(range(len(evs)))


async def test_stream_tool_calls():
    up = Scripted(TOOL_DELTAS, finish="tool_calls")
    client, _ = make(fast=up)  # type: ignore[arg-type]
    evs = sse_events((await client.post("/v1/responses", json={"model": "auto", "input": "q", "stream": True,
                                                               "tools": [{"type": "function", "name": "get_weather"}]})).text)  # fmt: skip
    final = evs[-1]["response"]
    assert evs[-1]["type"] == "response.completed"
    assert [i["type"] for i in final["output"]] == ["message", "function_call", "function_call"]
    a, b = final["output"][1], final["output"][2]
    assert (a["call_id"], a["name"], a["arguments"]) == ("call_a", "get_weather", '{"city":"Paris"}')
    assert (b["call_id"], b["name"], b["arguments"]) == ("call_b", "get_time", "{}")
    deltas = [
        e["delta"] for e in evs if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == 1
    ]
    assert "".join(deltas) == '{"city":"Paris"}'
    done = [e for e in evs if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in done] == [("get_weather", '{"city":"Paris"}'), ("get_time", "{}")]
    assert final["usage"] == {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": 5,
                              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12}  # fmt: skip


async def test_stream_error_midway_is_error_then_failed():
    up = Scripted(
        [{"content": "par"}], fail=errors.UpstreamUnavailable("upstream fast dropped the stream", upstream="fast")
    )
    client, _ = make(fast=up)  # type: ignore[arg-type]
    # the model "fast" by name: pinned, so no fallback hides the failure
    r = await client.post("/v1/responses", json={"model": "fast", "input": "q", "stream": True})
    evs = sse_events(r.text)
    assert [e["type"] for e in evs][-2:] == ["error", "response.failed"]
    assert evs[-2]["message"] == "upstream fast dropped the stream"
    failed = evs[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"] == "upstream fast dropped the stream"
    # a failed response is not stored
    assert (await client.get(f"/v1/responses/{failed['id']}")).status_code == 404


async def test_stream_length_is_response_incomplete():
    fast = FakeUpstream("fast", "fast-model", lambda b: FakeReply("a b", finish_reason="length"))
    client, _ = make(fast=fast)
    evs = sse_events((await client.post("/v1/responses", json={"model": "auto", "input": "x", "stream": True})).text)
    assert evs[-1]["type"] == "response.incomplete"
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_cached_answer_is_a_valid_response_and_stream():
    client, ups = make(cache=build_cache(config.CacheSettings(semantic=False)))
    req = {"model": "auto", "input": "same question", "temperature": 0}
    a = await client.post("/v1/responses", json=req)
    await client._transport.app.state.pipeline.drain()  # type: ignore[attr-defined]  # the cache write runs after the reply
    b = await client.post("/v1/responses", json=req)
    assert a.headers["x-thinkgate-cache"] == "miss" and b.headers["x-thinkgate-cache"] == "exact"
    assert len(ups["fast"].calls) == 1
    assert valid_response(b.json()).output_text == valid_response(a.json()).output_text
    assert a.json()["id"] != b.json()["id"]
    s = await client.post("/v1/responses", json={**req, "stream": True})
    assert s.headers["x-thinkgate-cache"] == "exact"
    evs = sse_events(s.text)
    assert valid_response(evs[-1]["response"]).output_text == "echo: same question"


# -- the store and previous_response_id ---------------------------------------------------------------


async def test_previous_response_id_continues_the_conversation():
    client, ups = make()
    first = (
        await client.post("/v1/responses", json={"model": "pinned", "input": "one", "instructions": "sys A"})
    ).json()
    second = await client.post(
        "/v1/responses",
        json={"model": "auto", "input": "two", "previous_response_id": first["id"], "instructions": "sys B"},
    )
    assert second.status_code == 200
    assert second.json()["previous_response_id"] == first["id"]
    # instructions are not carried over; the earlier thinking is not forwarded
    assert ups["fast"].calls[-1]["messages"] == [
        {"role": "system", "content": "sys B"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "42"},
        {"role": "user", "content": "two"},
    ]
    # a tool loop: the call comes back as a tool message after its assistant turn
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    tool_fast = FakeUpstream(
        "fast",
        "fast-model",
        lambda b: FakeReply("", tool_calls=calls) if b["messages"][-1]["role"] == "user" else FakeReply("done"),
    )
    client, ups = make(fast=tool_fast)
    t1 = (
        await client.post(
            "/v1/responses", json={"model": "auto", "input": "go", "tools": [{"type": "function", "name": "f"}]}
        )
    ).json()
    out = [{"type": "function_call_output", "call_id": t1["output"][0]["call_id"], "output": "42"}]
    t2 = (
        await client.post(
            "/v1/responses",
            json={
                "model": "auto",
                "input": out,
                "previous_response_id": t1["id"],
                "tools": [{"type": "function", "name": "f"}],
            },
        )
    ).json()
    assert valid_response(t2).output_text == "done"
    assert ups["fast"].calls[-1]["messages"] == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]


async def test_unknown_previous_response_is_404_like_openai():
    client, ups = make()
    r = await client.post("/v1/responses", json={"model": "auto", "input": "x", "previous_response_id": "resp_nope"})
    err = assert_openai_error(r, 404, "previous_response_id")
    assert err["message"] == "Previous response with id 'resp_nope' not found."
    assert ups["fast"].calls == []


async def test_retrieve_delete_and_input_items():
    client, _ = make()
    items = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    made = (await client.post("/v1/responses", json={"model": "auto", "input": items})).json()
    rid = made["id"]
    got = await client.get(f"/v1/responses/{rid}")
    assert got.status_code == 200 and got.json() == made
    page = (await client.get(f"/v1/responses/{rid}/input_items", params={"limit": 2, "order": "asc"})).json()
    assert page["object"] == "list" and page["has_more"] is True
    for it in page["data"]:
        ITEM.validate_python(it)
    assert [i["content"][0]["text"] for i in page["data"]] == ["m0", "m1"]
    nxt = (
        await client.get(
            f"/v1/responses/{rid}/input_items", params={"limit": 10, "order": "asc", "after": page["last_id"]}
        )
    ).json()
    assert [i["content"][0]["text"] for i in nxt["data"]] == ["m2", "m3", "m4"] and nxt["has_more"] is False
    desc = (await client.get(f"/v1/responses/{rid}/input_items")).json()
    assert desc["data"][0]["content"][0]["text"] == "m4"
    assert_openai_error(await client.get(f"/v1/responses/{rid}/input_items", params={"limit": 0}), 400, "limit")
    assert_openai_error(await client.get(f"/v1/responses/{rid}/input_items", params={"order": "up"}), 400, "order")
    d = await client.delete(f"/v1/responses/{rid}")
    assert d.json() == {"id": rid, "object": "response", "deleted": True}
    assert_openai_error(await client.get(f"/v1/responses/{rid}"), 404)
    assert_openai_error(await client.delete(f"/v1/responses/{rid}"), 404)
    assert_openai_error(await client.get(f"/v1/responses/{rid}/input_items"), 404)


async def test_store_false_and_streamed_responses():
    client, _ = make()
    r = (await client.post("/v1/responses", json={"model": "auto", "input": "x", "store": False})).json()
    assert (await client.get(f"/v1/responses/{r['id']}")).status_code == 404
    evs = sse_events(
        (await client.post("/v1/responses", json={"model": "auto", "input": "streamed", "stream": True})).text
    )
    final = evs[-1]["response"]
    got = (await client.get(f"/v1/responses/{final['id']}")).json()
    assert got["output"] == final["output"]


async def test_store_is_scoped_by_tenant():
    s = settings(
        auth={
            "keys": [{"key": "sk-tenant-a-0123456789", "tenant": "a"}, {"key": "sk-tenant-b-0123456789", "tenant": "b"}]
        }
    )
    keys = KeyStore.from_settings(s.auth, env={})
    app = create_app(s, upstreams={"fast": FakeUpstream("fast", "fast-model"), "reasoning": FakeUpstream("reasoning", "reasoning-model")},
                     middleware=middleware(keys, Limiter(s.limits)))  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as c:
        a = {"authorization": "Bearer sk-tenant-a-0123456789"}
        b = {"authorization": "Bearer sk-tenant-b-0123456789"}
        made = (await c.post("/v1/responses", json={"model": "auto", "input": "x"}, headers=a)).json()
        assert (await c.get(f"/v1/responses/{made['id']}", headers=a)).status_code == 200
        assert (await c.get(f"/v1/responses/{made['id']}", headers=b)).status_code == 404
        assert (await c.delete(f"/v1/responses/{made['id']}", headers=b)).status_code == 404
        r = await c.post(
            "/v1/responses", json={"model": "auto", "input": "y", "previous_response_id": made["id"]}, headers=b
        )
        assert_openai_error(r, 404, "previous_response_id")
        assert (await c.post("/v1/responses", json={"model": "auto", "input": "x"})).status_code == 401


class DownStore(MemoryResponseStore):
    async def put(self, *a: Any) -> None:
        raise StoreUnavailable("the response store (Redis at redis://x) did not answer the write: ConnectionError")

    async def get(self, *a: Any) -> None:
        raise StoreUnavailable("the response store (Redis at redis://x) did not answer the read: ConnectionError")


async def test_store_down_degrades():
    client, _ = make(response_store=DownStore())
    r = await client.post("/v1/responses", json={"model": "auto", "input": "x"})
    assert r.status_code == 200 and valid_response(r.json()).output_text == "echo: x"
    s = await client.post("/v1/responses", json={"model": "auto", "input": "x", "stream": True})
    assert sse_events(s.text)[-1]["type"] == "response.completed"
    err = assert_openai_error(
        await client.post("/v1/responses", json={"model": "auto", "input": "x", "previous_response_id": "resp_1"}), 503
    )
    assert "did not answer" in err["message"] and err["code"] == "response_store_unavailable"
    assert_openai_error(await client.get("/v1/responses/resp_1"), 503)


async def test_memory_store_ttl_and_bound():
    now = [0.0]
    store = MemoryResponseStore(ttl_s=10, max_entries=2, clock=lambda: now[0])
    for i in range(3):
        await store.put("t", f"r{i}", {"i": i})
    assert await store.get("t", "r0") is None and (await store.get("t", "r2")) == {"i": 2}
    assert await store.get("u", "r2") is None
    now[0] = 11
    assert await store.get("t", "r2") is None and await store.delete("t", "r1") is False


async def test_limits_apply():
    client, _ = make(settings(limits={"max_messages": 2}))
    r = await client.post("/v1/responses", json={"model": "auto", "input": [{"role": "user", "content": "a"}] * 3})
    assert_openai_error(r, 400, "input")
