"""Property/fuzz test of /v1/messages, /v1/messages/count_tokens and /v1/embeddings
against the whole app (auth, limits, cache, decision log; the app of test_fuzz_api):
generated Anthropic and embeddings bodies, valid, almost valid and garbage.
Properties: no 5xx; on /v1/messages* every error is Anthropic-shaped, on /v1/embeddings
OpenAI-shaped; every 200 is a well-formed message, event stream, count or embedding
list. THINKGATE_FUZZ_EXAMPLES scales the run (default 2000)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.router.api.test_fuzz_api import EXAMPLES, KEY, USER, any_json, make_app, maybe, text

pytestmark = pytest.mark.slow

source = st.one_of(
    st.fixed_dictionaries({"type": st.just("base64"), "media_type": maybe(st.just("image/png")), "data": maybe(text)}),
    st.fixed_dictionaries({"type": st.just("url"), "url": maybe(text)}),
    any_json,
)
block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": maybe(text)}),
    st.fixed_dictionaries({"type": st.just("image"), "source": source}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": maybe(text), "name": maybe(text), "input": maybe(st.dictionaries(text, text, max_size=2))}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": maybe(text), "content": maybe(st.one_of(text, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2))), "is_error": maybe(st.booleans())}),
    st.fixed_dictionaries({"type": st.just("thinking"), "thinking": maybe(text), "signature": maybe(text)}),
    st.dictionaries(text, any_json, max_size=3),
)  # fmt: skip
message = st.fixed_dictionaries(
    {
        "role": maybe(st.sampled_from(["user", "assistant"])),
        "content": maybe(st.one_of(text, st.lists(block, max_size=3))),
    }
)
tool = st.fixed_dictionaries(
    {"name": maybe(text), "input_schema": maybe(st.just({"type": "object"})), "description": maybe(text)}
)
OPTIONAL = {
    "system": st.one_of(text, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2)),
    "stop_sequences": st.lists(text, max_size=5),
    "temperature": st.one_of(st.floats(-1, 2), st.floats(allow_nan=True)),
    "top_p": st.floats(-1, 2),
    "top_k": st.integers(-5, 100),
    "tools": st.lists(tool, max_size=2),
    "tool_choice": st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none", "x"]), "name": text}),
    "metadata": st.fixed_dictionaries({"user_id": maybe(text)}),
    "thinking": st.fixed_dictionaries({"type": st.sampled_from(["enabled", "adaptive", "disabled", "x"]), "budget_tokens": st.integers(-5, 5000)}),
    "output_config": st.fixed_dictionaries({"format": st.fixed_dictionaries({"type": st.just("json_schema"), "schema": st.just({"type": "object"})})}),
    "stream": st.booleans(),
    "service_tier": text,
    "thinkgate": st.dictionaries(st.sampled_from(["force_route", "deer", "debug", "bogus"]), text, max_size=2),
}  # fmt: skip


@st.composite
def messages_body(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {
        "model": draw(maybe(st.sampled_from(["auto", "fast", "pinned", "nope"]))),
        "max_tokens": draw(maybe(st.integers(-5, 100_000))),
        "messages": draw(maybe(st.lists(message, min_size=1, max_size=4))),
    }
    for k, strat in OPTIONAL.items():
        if draw(st.integers(0, 3)) == 0:
            body[k] = draw(maybe(strat))
    if draw(st.integers(0, 9)) == 0:
        del body[draw(st.sampled_from(sorted(body)))]
    return body


valid_block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries({"type": st.just("image"), "source": st.fixed_dictionaries({"type": st.just("url"), "url": st.just("https://x/y.png")})}),
)  # fmt: skip
valid_messages_body = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["auto", "fast", "pinned"]),
        "max_tokens": st.integers(1, 500),
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.just("user"), "content": st.one_of(text, st.lists(valid_block, min_size=1, max_size=2))}),
            min_size=1, max_size=3,
        ),
    },
    optional={"system": text, "stream": st.booleans(), "temperature": st.floats(0, 1), "stop_sequences": st.lists(st.text(min_size=1, max_size=5), max_size=4)},
)  # fmt: skip


@st.composite
def embeddings_body(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {
        "model": draw(maybe(st.sampled_from(["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "nope"]))),
        "input": draw(maybe(st.one_of(text, st.lists(text, max_size=4), st.lists(st.integers(-3, 3), max_size=3)))),
    }
    if draw(st.booleans()):
        body["encoding_format"] = draw(maybe(st.sampled_from(["float", "base64", "int"])))
    if draw(st.booleans()):
        body["dimensions"] = draw(maybe(st.integers(-1, 1000)))
    return body


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.sampled_from(["/v1/messages", "/v1/messages", "/v1/messages/count_tokens", "/v1/embeddings"]))
    if path == "/v1/embeddings":
        valid = st.fixed_dictionaries(
            {"model": st.just("all-MiniLM-L6-v2"), "input": st.one_of(st.text(min_size=1), st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=3))},
            optional={"encoding_format": st.sampled_from(["float", "base64"]), "dimensions": st.just(384)},
        )  # fmt: skip
        body = draw(st.one_of(valid, embeddings_body()))
    else:
        body = draw(st.one_of(valid_messages_body, messages_body()))
        if path.endswith("count_tokens") and isinstance(body, dict) and draw(st.integers(0, 3)):
            for k in ("max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k", "metadata"):
                body.pop(k, None)  # fields create takes and count_tokens refuses
    if draw(st.integers(0, 19)) == 0:
        body = draw(any_json)
    content = json.dumps(body).encode() if draw(st.integers(0, 29)) else draw(st.binary(max_size=40))
    auth = draw(
        st.sampled_from(
            [
                {"x-api-key": KEY},
                {"x-api-key": KEY},
                {"x-api-key": USER},
                {"authorization": f"Bearer {KEY}"},
                {"x-api-key": "sk-bad"},
                {},
            ]
        )
    )
    return {
        "path": path,
        "content": content,
        "headers": {"content-type": "application/json", "anthropic-version": "2023-06-01", **auth},
    }


def check(r: httpx.Response, case: dict[str, Any]) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500], case)
    anthropic = case["path"].startswith("/v1/messages")
    if r.status_code >= 400:
        body = r.json()
        if anthropic:
            assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        else:
            assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert "Traceback" not in r.text
        return
    if case["path"] == "/v1/messages/count_tokens":
        assert isinstance(r.json()["input_tokens"], int)
    elif case["path"] == "/v1/embeddings":
        assert r.json()["object"] == "list" and r.json()["data"]
    elif r.headers["content-type"].startswith("text/event-stream"):
        names = [ln[7:] for ln in r.text.split("\n") if ln.startswith("event: ")]
        assert names[0] == "message_start" and names[-1] == "message_stop", names
    else:
        msg = r.json()
        assert msg["type"] == "message" and msg["stop_reason"] and isinstance(msg["content"], list), msg


def test_fuzz_anthropic_and_embeddings() -> None:
    loop = asyncio.new_event_loop()
    app = make_app()  # no pipeline embedder: /v1/embeddings builds the real MiniLM on first use
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz", timeout=30)
    stats: dict[str, int] = {"cases": 0}
    crashes: dict[str, dict[str, Any]] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])  # fmt: skip
    @given(case=cases())
    def one(case: dict[str, Any]) -> None:
        stats["cases"] += 1
        try:
            r = loop.run_until_complete(client.post(case["path"], content=case["content"], headers=case["headers"]))
        except Exception as e:  # the app raised: a client would see a 500
            crashes.setdefault(f"{type(e).__name__}: {e}", case)
            return
        k = f"{case['path']} {r.status_code}"
        stats[k] = stats.get(k, 0) + 1
        check(r, case)

    try:
        one()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
        print("fuzz:", stats)
    assert not crashes, crashes
    ok = sum(v for k, v in stats.items() if k.endswith(" 200"))
    assert ok > stats["cases"] // 20, stats  # the generator reaches the success paths too
