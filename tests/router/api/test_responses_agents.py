"""What coding agents send to /v1/responses (Codex CLI 0.171, the Vercel AI SDK 7):
each field is honoured, accepted-dropped-and-recorded, or refused in OpenAI's shape,
and `item_reference` inputs resolve from the tenant's own stored items."""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from typing import Any

import httpx
import pytest

from router.access.auth import KeyStore
from router.access.limits import Limiter
from router.access.middleware import middleware
from router.app import create_app
from router.upstreams.fake import FakeReply, FakeUpstream
from tests.router.api.test_responses import TOOL_DELTAS, Scripted, sse_events, valid_response
from tests.router.test_app import assert_openai_error, settings
from tests.router.test_app import make as make_app


class _Sink:
    """The decision log: the records as the pipeline hands them over."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    async def append(self, d: Any) -> None:
        self.records.append(d)


SINKS: dict[int, _Sink] = {}


def make(s: Any = None, **kw: Any) -> tuple[httpx.AsyncClient, dict[str, Any]]:
    sink = _Sink()
    client, ups = make_app(s, log_sink=sink, **kw)
    SINKS[id(client)] = sink
    return client, ups


async def decision(client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    for _ in range(50):  # the record is written as the reply finishes
        for d in SINKS[id(client)].records:
            if d.id == request_id:
                return d.to_dict()
        await asyncio.sleep(0.02)
    raise AssertionError(f"no decision record {request_id}")


FN = {
    "type": "function",
    "name": "exec_command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}
NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools for spawning and managing sub-agents.",
    "tools": [
        {"type": "function", "name": "spawn_agent", "description": "spawn", "parameters": {"type": "object"}},
        {"type": "function", "name": "close_agent", "parameters": {"type": "object"}, "strict": False},
    ],
}
# what Codex CLI 0.171's first request holds besides its input (captured from the real binary)
CODEX_FIELDS = {
    "tools": [FN, NAMESPACE, {"type": "web_search", "external_web_access": False}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "01a25145-5dc5-73d3-a86e-a0ff5e411488",
    "client_metadata": {"root_turn_id": "t1", "x-codex-turn-metadata": '{"session_id":"s"}'},
}


async def test_codex_request_is_accepted_and_what_is_dropped_is_recorded():
    client, ups = make()
    r = await client.post("/v1/responses", json={"model": "auto", "input": "list files", **CODEX_FIELDS})
    assert r.status_code == 200, r.text
    sent = ups["fast"].calls[-1]
    # the namespace's functions flattened under their own names; web_search gone
    assert [t["function"]["name"] for t in sent["tools"]] == ["exec_command", "spawn_agent", "close_agent"]
    assert sent["tools"][1]["function"]["description"] == "spawn"
    for absent in ("client_metadata", "prompt_cache_key", "include", "store"):
        assert absent not in sent
    rec = await decision(client, r.headers["x-thinkgate-request-id"])
    assert rec["dropped"] == ["tools[2]:web_search", "client_metadata", "prompt_cache_key"]
    evs = sse_events(r.text)
    assert evs[-1]["type"] == "response.completed"
    # echoed as sent, less the hosted tool that was dropped (the answer was not made with it)
    assert evs[-1]["response"]["tools"] == CODEX_FIELDS["tools"][:2]


async def test_plain_request_records_nothing_dropped():
    client, _ = make()
    r = await client.post("/v1/responses", json={"model": "auto", "input": "x"})
    assert (await decision(client, r.headers["x-thinkgate-request-id"]))["dropped"] is None


@pytest.mark.parametrize(
    "field, value, recorded",
    [
        ("client_metadata", {"a": "b"}, "client_metadata"),
        ("prompt_cache_key", "k", "prompt_cache_key"),
        ("service_tier", "auto", "service_tier"),
        ("safety_identifier", "h", "safety_identifier"),
        ("max_tool_calls", 3, "max_tool_calls"),
        ("include", ["file_search_call.results"], "include:file_search_call.results"),
        ("tools", [{"type": "file_search", "vector_store_ids": ["v"]}], "tools[0]:file_search"),
        ("tools", [{"type": "code_interpreter", "container": {"type": "auto"}}], "tools[0]:code_interpreter"),
    ],
)
async def test_each_dropped_field_is_accepted_and_recorded(field: str, value: Any, recorded: str):
    client, ups = make()
    r = await client.post("/v1/responses", json={"model": "auto", "input": "x", field: value})
    assert r.status_code == 200, r.text
    assert field not in ups["fast"].calls[-1]
    assert recorded in (await decision(client, r.headers["x-thinkgate-request-id"]))["dropped"]


async def test_tool_choice_is_not_sent_when_only_hosted_tools_were_offered():
    client, ups = make()
    r = await client.post(
        "/v1/responses", json={"model": "auto", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "auto"}
    )
    assert r.status_code == 200, r.text
    sent = ups["fast"].calls[-1]
    assert "tools" not in sent and "tool_choice" not in sent
    assert (await decision(client, r.headers["x-thinkgate-request-id"]))["dropped"] == [
        "tools[0]:web_search",
        "tool_choice",
    ]


async def test_hosted_tools_refused_per_route_by_config():
    s = settings(responses={"hosted_tools_by_route": {"pinned": "refuse"}})
    client, ups = make(s)
    body = {"input": "x", "tools": [FN, {"type": "web_search"}]}
    r = await client.post("/v1/responses", json={"model": "pinned", **body})
    err = assert_openai_error(r, 400, "tools[1].type")
    assert "web_search" in err["message"]
    assert ups["reasoning"].calls == []
    # another route keeps the default: dropped
    assert (await client.post("/v1/responses", json={"model": "auto", **body})).status_code == 200
    s = settings(responses={"hosted_tools": "refuse"})
    client, _ = make(s)
    assert_openai_error(await client.post("/v1/responses", json={"model": "auto", **body}), 400, "tools[1].type")


async def test_client_run_tools_other_than_functions_are_refused():
    client, ups = make()
    for kind in ("custom", "local_shell", "computer_use_preview", "apply_patch"):
        r = await client.post(
            "/v1/responses", json={"model": "auto", "input": "x", "tools": [{"type": kind, "name": "t"}]}
        )
        assert_openai_error(r, 400, "tools[0].type")
    assert ups["fast"].calls == []


class NamespacedCall(Scripted):
    def __init__(self) -> None:
        super().__init__(
            [{"tool_calls": [{"index": 0, "id": "call_ns", "type": "function",
                              "function": {"name": "spawn_agent", "arguments": "{}"}}]},
             {"tool_calls": [{"index": 1, "id": "call_fn", "type": "function",
                              "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}}]}],
            finish="tool_calls",
        )  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_of_a_namespaced_function_maps_back_to_its_namespace(stream: bool):
    client, _ = make(fast=NamespacedCall())  # type: ignore[arg-type]
    r = await client.post(
        "/v1/responses", json={"model": "auto", "input": "x", "tools": [FN, NAMESPACE], "stream": stream}
    )
    assert r.status_code == 200, r.text
    out = sse_events(r.text)[-1]["response"] if stream else r.json()
    valid_response(out)
    calls = [i for i in out["output"] if i["type"] == "function_call"]
    assert [(c["name"], c.get("namespace")) for c in calls] == [
        ("spawn_agent", "multi_agent_v1"),
        ("exec_command", None),
    ]
    if stream:
        done = [e["item"] for e in sse_events(r.text) if e["type"] == "response.output_item.done"]
        assert done[0]["namespace"] == "multi_agent_v1" and "namespace" not in done[1]


async def test_namespaced_call_sent_back_becomes_a_plain_chat_tool_call():
    client, ups = make()
    items = [
        {"role": "user", "content": "spawn"},
        {"type": "function_call", "call_id": "c1", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "agent 7"},
    ]  # fmt: skip
    r = await client.post("/v1/responses", json={"model": "auto", "input": items, "tools": [NAMESPACE]})
    assert r.status_code == 200, r.text
    assert ups["fast"].calls[-1]["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "spawn_agent", "arguments": "{}"}}],
    }


def _thinking(token: str) -> str:
    assert token.startswith("tg1.")
    return zlib.decompress(base64.urlsafe_b64decode(token[4:])).decode()


@pytest.mark.parametrize("stream", [False, True])
async def test_encrypted_reasoning_round_trip_with_store_false(stream: bool):
    client, ups = make()
    req = {
        "model": "pinned",
        "input": "q",
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "stream": stream,
    }
    r = await client.post("/v1/responses", json=req)
    assert r.status_code == 200, r.text
    out = sse_events(r.text)[-1]["response"] if stream else r.json()
    valid_response(out)
    rs = out["output"][0]
    assert rs["type"] == "reasoning" and _thinking(rs["encrypted_content"]) == "think hard"
    assert (await client.get(f"/v1/responses/{out['id']}")).status_code == 404  # store: false
    # the next turn sends the reasoning item back as Codex does: encrypted, no content
    back = {"type": "reasoning", "id": rs["id"], "summary": [], "encrypted_content": rs["encrypted_content"]}
    r2 = await client.post(
        "/v1/responses",
        json={
            **req,
            "stream": False,
            "input": [
                {"role": "user", "content": "q"},
                back,
                {"role": "assistant", "content": "42"},
                {"role": "user", "content": "and?"},
            ],
        },
    )
    assert r2.status_code == 200, r2.text
    sent = json.dumps(ups["reasoning"].calls[-1]["messages"])
    assert "think hard" not in sent and "tg1." not in sent  # thinking never goes upstream as input
    # without the include the item has no encrypted_content
    plain = (await client.post("/v1/responses", json={"model": "pinned", "input": "q"})).json()
    assert "encrypted_content" not in plain["output"][0]


async def test_item_reference_resolves_stored_reasoning_message_and_call():
    tool_reply = FakeUpstream(
        "reasoning", "reasoning-model",
        lambda b: FakeReply("checking", reasoning="think hard",
                            tool_calls=[{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
    )  # fmt: skip
    client, ups = make(reasoning=tool_reply)
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    first = (await client.post("/v1/responses", json={"model": "pinned", "input": "go", "tools": tools})).json()
    kinds = [i["type"] for i in first["output"]]
    assert kinds == ["reasoning", "function_call"], kinds
    # the Vercel AI SDK's next turn with store on: references for what thinkgate returned
    refs = [{"type": "item_reference", "id": i["id"]} for i in first["output"]]
    second = {"model": "pinned", "tools": tools, "input": [
        {"role": "user", "content": "go"}, *refs,
        {"type": "function_call_output", "call_id": "call_1", "output": "tool says 7"},
    ]}  # fmt: skip
    r = await client.post("/v1/responses", json=second)
    assert r.status_code == 200, r.text
    sent = ups["reasoning"].calls[-1]["messages"]
    assert sent == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "tool says 7"},
    ]  # fmt: skip
    # input_items lists the resolved items under their own ids
    items = (await client.get(f"/v1/responses/{r.json()['id']}/input_items?order=asc")).json()["data"]
    assert [i["id"] for i in items[1:3]] == [i["id"] for i in first["output"]]


async def test_item_reference_to_an_unknown_item_is_openai_404():
    client, ups = make()
    r = await client.post(
        "/v1/responses", json={"model": "auto", "input": [{"type": "item_reference", "id": "rs_nope"}]}
    )
    err = assert_openai_error(r, 404, "input")
    assert "rs_nope" in err["message"]
    assert ups["fast"].calls == []


async def test_items_of_store_false_responses_are_not_referable():
    client, _ = make()
    out = (await client.post("/v1/responses", json={"model": "pinned", "input": "q", "store": False})).json()
    r = await client.post(
        "/v1/responses", json={"model": "auto", "input": [{"type": "item_reference", "id": out["output"][0]["id"]}]}
    )
    assert_openai_error(r, 404, "input")


async def test_item_reference_is_scoped_by_tenant_and_items_are_not_responses():
    s = settings(
        auth={
            "keys": [{"key": "sk-tenant-a-0123456789", "tenant": "a"}, {"key": "sk-tenant-b-0123456789", "tenant": "b"}]
        }
    )
    keys = KeyStore.from_settings(s.auth, env={})
    ups = {"fast": FakeUpstream("fast", "fast-model"),
           "reasoning": FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="hm"))}  # fmt: skip
    app = create_app(s, upstreams=ups, middleware=middleware(keys, Limiter(s.limits)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as c:
        a = {"authorization": "Bearer sk-tenant-a-0123456789"}
        b = {"authorization": "Bearer sk-tenant-b-0123456789"}
        made = (await c.post("/v1/responses", json={"model": "pinned", "input": "x"}, headers=a)).json()
        ref = {"model": "auto", "input": [{"type": "item_reference", "id": made["output"][1]["id"]},
                                          {"role": "user", "content": "more"}]}  # fmt: skip
        assert (await c.post("/v1/responses", json=ref, headers=a)).status_code == 200
        assert_openai_error(await c.post("/v1/responses", json=ref, headers=b), 404, "input")
        # an item's store key is not a response id
        for path in (f"/v1/responses/item:{made['output'][0]['id']}", f"/v1/responses/{made['output'][0]['id']}"):
            assert (await c.get(path, headers=a)).status_code == 404
            assert (await c.delete(path, headers=a)).status_code == 404
        # deleting the response deletes its items
        assert (await c.delete(f"/v1/responses/{made['id']}", headers=a)).status_code == 200
        assert_openai_error(await c.post("/v1/responses", json=ref, headers=a), 404, "input")


async def test_ai_sdk_store_on_second_turn_after_a_reasoning_turn():
    """The issue's case: the AI SDK's tool loop breaks exactly when thinkgate decided to
    reason. Streamed first turn (as streamText), references in the second."""
    client, ups = make(reasoning=Scripted([{"reasoning_content": "plan"}, *TOOL_DELTAS], finish="tool_calls"))  # type: ignore[arg-type]
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
             {"type": "function", "name": "get_time", "parameters": {"type": "object"}}]  # fmt: skip
    evs = sse_events((await client.post("/v1/responses", json={"model": "pinned", "input": "w?", "tools": tools,
                                                              "stream": True, "store": True})).text)  # fmt: skip
    out = evs[-1]["response"]["output"]
    assert [i["type"] for i in out] == ["reasoning", "message", "function_call", "function_call"]
    refs = [{"type": "item_reference", "id": i["id"]} for i in out[:2]]
    calls = [
        {"type": "function_call", "call_id": i["call_id"], "name": i["name"], "arguments": i["arguments"]}
        for i in out[2:]
    ]
    outs = [{"type": "function_call_output", "call_id": i["call_id"], "output": "ok"} for i in out[2:]]
    r = await client.post("/v1/responses", json={"model": "pinned", "tools": tools, "store": True,
                                                 "input": [{"role": "user", "content": "w?"}, *refs, *calls, *outs]})  # fmt: skip
    assert r.status_code == 200, r.text
    sent = ups["reasoning"].calls[-1]["messages"]
    assert sent[1]["content"] == "Let me check." and len(sent[1]["tool_calls"]) == 2
    assert "plan" not in json.dumps(sent)


@pytest.mark.redis
async def test_item_reference_across_two_replicas_on_one_redis(redis_url: str):
    from router.cache.stored_responses import build_response_store

    def replica() -> tuple[httpx.AsyncClient, dict[str, Any]]:
        store = build_response_store(redis_url, ttl_s=60, max_entries=10, timeout_ms=300, namespace="tgitems")
        return make(settings(responses={"redis_url": redis_url}), response_store=store)

    (a, _), (b, ups_b) = replica(), replica()
    made = (await a.post("/v1/responses", json={"model": "pinned", "input": "q"})).json()
    rs, msg = made["output"]
    refs = [{"type": "item_reference", "id": rs["id"]}, {"type": "item_reference", "id": msg["id"]}]
    r = await b.post("/v1/responses", json={"model": "auto", "input": [{"role": "user", "content": "q"}, *refs,
                                                                      {"role": "user", "content": "more"}]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert ups_b["fast"].calls[-1]["messages"][1] == {"role": "assistant", "content": "42"}
    assert (await b.delete(f"/v1/responses/{made['id']}")).status_code == 200  # the other replica deletes it
    assert_openai_error(await a.post("/v1/responses", json={"model": "auto", "input": refs}), 404, "input")
