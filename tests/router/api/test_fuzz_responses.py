"""Property test of the Responses API routes: generated bodies (valid, almost
valid and garbage) and ids against the whole app with auth, limits and a cache.
Properties: no 5xx; every error is OpenAI-shaped; every 200 validates against
the openai SDK's Response model, every stream event against its event union.
THINKGATE_FUZZ_EXAMPLES scales the run (default 2000)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter

from router import config
from router.access.auth import KeyStore
from router.access.limits import Limiter
from router.access.middleware import middleware
from router.app import create_app
from router.cache import build_cache
from router.upstreams.fake import FakeReply, FakeUpstream

EXAMPLES = int(os.environ.get("THINKGATE_FUZZ_EXAMPLES", "2000"))
KEY = "sk-fuzz-responses-0123456789"
EVENT = TypeAdapter(ResponseStreamEvent)
ITEM = TypeAdapter(ResponseItem)

text = st.text(max_size=20)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), text)
any_json = st.recursive(
    scalars, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(text, c, max_size=3)), max_leaves=10
)


def maybe(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(s, s, s, any_json)


part = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text", "text"]), "text": maybe(text)}),
    st.fixed_dictionaries(
        {"type": st.just("input_image"), "image_url": maybe(st.just("data:image/png;base64,AAAA"))},
        optional={"detail": maybe(st.sampled_from(["auto", "low", "high"]))},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["refusal", "input_file", "input_audio"])}, optional={"refusal": text}
    ),
)
message = st.fixed_dictionaries(
    {"role": maybe(st.sampled_from(["user", "assistant", "system", "developer", "tool"])),
     "content": st.one_of(text, st.lists(part, max_size=3), any_json)},
    optional={"type": st.just("message"), "id": maybe(text), "status": maybe(st.sampled_from(["completed", "incomplete"]))},
)  # fmt: skip
call = st.fixed_dictionaries(
    {
        "type": st.just("function_call"),
        "call_id": maybe(text),
        "name": maybe(text),
        "arguments": maybe(st.just('{"a":1}')),
    }
)
output = st.fixed_dictionaries(
    {
        "type": st.just("function_call_output"),
        "call_id": maybe(text),
        "output": st.one_of(text, st.lists(part, max_size=2), any_json),
    }
)
reasoning = st.fixed_dictionaries(
    {"type": st.just("reasoning"), "summary": any_json}, optional={"id": text, "content": any_json}
)
item = st.one_of(message, message, call, output, reasoning, st.fixed_dictionaries({"type": text}), any_json)
tool = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("function"), "name": maybe(text)},
        optional={
            "parameters": maybe(st.just({"type": "object"})),
            "strict": maybe(st.booleans()),
            "description": maybe(text),
        },
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["web_search", "file_search", "mcp"])}),
)
fmt = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
    st.fixed_dictionaries(
        {"type": st.just("json_schema"), "name": maybe(text), "schema": maybe(st.just({"type": "object"}))},
        optional={"strict": maybe(st.booleans())},
    ),
)
body = st.fixed_dictionaries(
    {
        "model": maybe(st.sampled_from(["auto", "fast", "reasoning", "nope", ""])),
        "input": st.one_of(text, st.lists(item, max_size=5), any_json),
    },
    optional={
        "instructions": maybe(text),
        "stream": maybe(st.booleans()),
        "store": maybe(st.booleans()),
        "tools": st.one_of(st.lists(tool, max_size=2), any_json),
        "tool_choice": maybe(
            st.one_of(
                st.sampled_from(["auto", "none", "required"]),
                st.fixed_dictionaries({"type": st.just("function"), "name": text}),
            )
        ),
        "text": maybe(
            st.fixed_dictionaries(
                {}, optional={"format": maybe(fmt), "verbosity": maybe(st.sampled_from(["low", "high"]))}
            )
        ),
        "max_output_tokens": maybe(st.integers(-2, 100_000)),
        "reasoning": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "effort": maybe(st.sampled_from(["low", "high"])),
                    "summary": maybe(st.sampled_from(["auto", "concise"])),
                },
            )
        ),
        "temperature": maybe(st.floats(-1, 3)),
        "top_p": maybe(st.floats(-1, 2)),
        "metadata": maybe(st.dictionaries(text, text, max_size=3)),
        "previous_response_id": maybe(st.sampled_from(["resp_missing", "STORED"])),
        "parallel_tool_calls": maybe(st.booleans()),
        "include": maybe(st.lists(text, max_size=2)),
        "thinkgate": maybe(
            st.fixed_dictionaries(
                {}, optional={"force_route": st.sampled_from(["fast", "reasoning"]), "debug": st.booleans()}
            )
        ),
        "bogus": any_json,
    },
)

valid_items = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer"]), "content": text}),
        st.fixed_dictionaries(
            {
                "role": st.just("user"),
                "content": st.lists(
                    st.fixed_dictionaries({"type": st.just("input_text"), "text": text}), min_size=1, max_size=2
                ),
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("message"),
                "role": st.just("assistant"),
                "content": st.lists(st.fixed_dictionaries({"type": st.just("output_text"), "text": text}), max_size=2),
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("function_call"),
                "call_id": st.just("c1"),
                "name": st.just("f"),
                "arguments": st.just("{}"),
            }
        ),
        st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": st.just("c1"), "output": text}),
        st.fixed_dictionaries({"type": st.just("reasoning"), "summary": st.just([])}),
    ),
    min_size=1,
    max_size=5,
).filter(lambda xs: any(x.get("role") in ("user", "system", "developer") or x.get("type") != "reasoning" for x in xs))
valid_body = st.fixed_dictionaries(
    {"model": st.sampled_from(["auto", "fast", "reasoning"]), "input": st.one_of(text, valid_items)},
    optional={
        "instructions": text,
        "stream": st.booleans(),
        "store": st.booleans(),
        "tools": st.just([{"type": "function", "name": "f", "parameters": {"type": "object"}}]),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "text": st.just({"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}}),
        "max_output_tokens": st.integers(1, 4096),
        "reasoning": st.fixed_dictionaries(
            {}, optional={"effort": st.sampled_from(["low", "high"]), "summary": st.just("auto")}
        ),
        "temperature": st.floats(0, 2),
        "previous_response_id": st.just("STORED"),
        "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
    },
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, dict[str, str]]:
    kind = draw(
        st.sampled_from(["valid", "valid", "valid", "body", "body", "body", "json", "bytes", "get", "delete", "items"])
    )
    if kind == "valid":
        return "POST", "/v1/responses", json.dumps(draw(valid_body)).encode(), {}
    if kind == "body":
        return "POST", "/v1/responses", json.dumps(draw(body), allow_nan=True).encode(), {}
    if kind == "json":
        return "POST", "/v1/responses", json.dumps(draw(any_json), allow_nan=True).encode(), {}
    if kind == "bytes":
        return "POST", "/v1/responses", draw(st.binary(max_size=100)), {}
    rid = draw(st.sampled_from(["STORED", "resp_missing", "x", "%2F..", "a" * 300]))
    if kind == "get":
        return "GET", f"/v1/responses/{rid}", None, {}
    if kind == "delete":
        return "DELETE", f"/v1/responses/{rid}", None, {}
    q = draw(
        st.dictionaries(
            st.sampled_from(["limit", "order", "after", "include"]),
            st.one_of(text, st.sampled_from(["1", "100", "101", "asc", "desc", "-1"])),
            max_size=3,
        )
    )
    return "GET", f"/v1/responses/{rid}/input_items", None, q


def _app() -> Any:
    s = config.from_dict({
        "models": {
            "fast": {"provider": "fake", "model": "fast-model"},
            "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True},
        },
        "routes": {"auto": {}},
        "selfref": {"enabled": False},
        "auth": {"keys": [{"key": KEY, "tenant": "t", "admin": True}]},
        "limits": {"max_tokens": 4096},
    })  # fmt: skip
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]

    def fast(b: dict[str, Any]) -> FakeReply:
        return (
            FakeReply("", tool_calls=calls)
            if b.get("tools") and b["messages"][-1]["role"] == "user"
            else FakeReply("ok then")
        )

    ups = {
        "fast": FakeUpstream("fast", "fast-model", fast),
        "reasoning": FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="hmm")),
    }
    keys = KeyStore.from_settings(s.auth, env={})
    return create_app(s, upstreams=ups, cache=build_cache(s.cache), middleware=middleware(keys, Limiter(s.limits)))


def _check(r: httpx.Response, method: str, path: str, stream: bool) -> None:
    assert r.status_code < 500, (method, path, r.status_code, r.text[:500])
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]
        return
    if path == "/v1/responses" and stream:
        blocks = r.text.strip().split("\n\n")
        events = [EVENT.validate_python(json.loads(b.split("\n", 1)[1][6:])) for b in blocks]
        assert events[0].type == "response.created"
        assert events[-1].type in ("response.completed", "response.incomplete", "response.failed")
        assert [e.sequence_number for e in events] == list(range(len(events)))
    elif path.endswith("/input_items"):
        for i in r.json()["data"]:
            ITEM.validate_python(i)
    elif method != "DELETE":
        Response.model_validate(r.json())


@pytest.mark.slow
def test_responses_routes_never_5xx() -> None:
    loop = asyncio.new_event_loop()
    app = _app()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tg", headers={"authorization": f"Bearer {KEY}"}
    )
    stored = loop.run_until_complete(client.post("/v1/responses", json={"model": "auto", "input": "seed"})).json()["id"]
    seen = {"ok": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(requests())
    def run(req: tuple[str, str, bytes | None, dict[str, str]]) -> None:
        method, path, raw, q = req
        path = path.replace("STORED", stored)
        if raw is not None:
            raw = raw.replace(b'"STORED"', json.dumps(stored).encode())
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        stream = isinstance(parsed, dict) and parsed.get("stream") is True
        r = loop.run_until_complete(
            client.request(method, path, content=raw, params=q, headers={"content-type": "application/json"})
        )
        _check(r, method, path, stream)
        seen["ok"] += r.status_code == 200
        if r.status_code == 200 and method == "POST" and not stream and r.json().get("store"):
            items = loop.run_until_complete(
                client.get(f"/v1/responses/{r.json()['id']}/input_items", params={"order": "asc"})
            )
            _check(items, "GET", "/input_items", False)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1

    try:
        run()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    assert seen["ok"] > EXAMPLES // 10, seen  # the generator reaches the success paths, not only errors
