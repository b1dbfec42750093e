"""Property/fuzz test of the HTTP API: thousands of generated requests (bodies,
headers, paths, methods; valid, almost valid and garbage) against the whole ASGI
app with auth, limits, cache, decision log and metrics wired in. Properties: no
5xx, every error is OpenAI-shaped JSON, every 200 is a well-formed completion or
SSE stream. THINKGATE_FUZZ_EXAMPLES scales the run (default 2000)."""

from __future__ import annotations

import asyncio
import json
import os
import traceback
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from router import config
from router.access.auth import KeyStore
from router.access.limits import Limiter
from router.access.middleware import middleware
from router.app import create_app
from router.cache import build_cache
from router.dashboard import routes as dashboard_routes
from router.decisions.log import MemoryDecisionLog
from router.decisions.metrics import Metrics
from router.upstreams.fake import FakeReply, FakeUpstream
from router.upstreams.resilient import wrap_all

EXAMPLES = int(os.environ.get("THINKGATE_FUZZ_EXAMPLES", "2000"))
KEY = "sk-fuzz-admin-0123456789"
USER = "sk-fuzz-user-0123456789"

# -- strategies ----------------------------------------------------------------------------

text = st.text(max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), text)
any_json = st.recursive(
    scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(text, c, max_size=4)), max_leaves=12
)


def maybe(strategy: st.SearchStrategy[Any], other: st.SearchStrategy[Any] = any_json) -> st.SearchStrategy[Any]:
    """Mostly the plausible value, sometimes anything."""
    return st.one_of(strategy, strategy, strategy, other)


part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": maybe(text)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": maybe(st.fixed_dictionaries({"url": text}))}),
    st.dictionaries(text, any_json, max_size=3),
)
content = st.one_of(text, st.lists(part, max_size=3), st.none(), any_json)
message = st.fixed_dictionaries(
    {
        "role": maybe(st.sampled_from(["system", "user", "assistant", "tool", "developer", "function"])),
        "content": content,
    },
    optional={
        "name": maybe(text),
        "tool_calls": any_json,
        "tool_call_id": maybe(text),
    },
)
controls = st.dictionaries(
    st.sampled_from(["force_route", "force-route", "cache_control", "deer", "selfref_threshold", "debug", "bogus"]),
    any_json,
    max_size=3,
)
chat_body = st.fixed_dictionaries(
    {
        "model": maybe(st.sampled_from(["auto", "fast", "reasoning", "fast-model", "nope", ""])),
        "messages": maybe(st.lists(message, max_size=5)),
    },
    optional={
        "stream": maybe(st.booleans()),
        "stream_options": maybe(st.fixed_dictionaries({"include_usage": maybe(st.booleans())})),
        "max_tokens": maybe(st.integers(-5, 100_000)),
        "max_completion_tokens": maybe(st.integers(-5, 100_000)),
        "temperature": maybe(st.floats(-1, 3)),
        "top_p": maybe(st.floats(-1, 2)),
        "n": maybe(st.integers(-1, 5)),
        "stop": maybe(st.one_of(text, st.lists(text, max_size=5))),
        "logprobs": maybe(st.booleans()),
        "top_logprobs": maybe(st.integers(-1, 30)),
        "seed": maybe(st.integers()),
        "user": maybe(text),
        "tools": any_json,
        "tool_choice": any_json,
        "response_format": maybe(st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])})),
        "thinkgate": maybe(controls),
        "extra": any_json,
    },
)
valid_chat_body = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["auto", "fast", "reasoning"]),
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": text}),
            min_size=1,
            max_size=4,
        ),
    },
    optional={
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "max_tokens": st.integers(1, 1000),
        "temperature": st.floats(0, 2),
        "logprobs": st.booleans(),
        "top_logprobs": st.integers(0, 20),
        "thinkgate": st.fixed_dictionaries(
            {},
            optional={
                "force_route": st.sampled_from(["fast", "reasoning", "auto"]),
                "debug": st.booleans(),
                "cache_control": st.sampled_from(["no-cache", "no-store", "max-age=10"]),
            },
        ),
    },
)
completion_body = st.fixed_dictionaries(
    {"model": maybe(st.sampled_from(["auto", "fast"])), "prompt": maybe(st.one_of(text, st.lists(text, max_size=3)))},
    optional={
        "stream": maybe(st.booleans()),
        "max_tokens": maybe(st.integers(-5, 5000)),
        "logprobs": maybe(st.integers(-1, 10)),
        "echo": any_json,
    },
)
header_value = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip())
control_headers = st.dictionaries(
    st.sampled_from(
        [
            "x-thinkgate-force-route",
            "x-thinkgate-cache-control",
            "x-thinkgate-deer",
            "x-thinkgate-selfref-threshold",
            "x-thinkgate-debug",
        ]
    ),
    st.one_of(
        st.sampled_from(
            [
                b"fast",
                b"reasoning",
                b"no-cache",
                b"no-store, max-age=5",
                b"off",
                b"threshold=0.9",
                b"1",
                b"0.8",
                b"max-age=-1",
            ]
        ),
        header_value,
    ),
    max_size=3,
)
auth_header = st.sampled_from([KEY, KEY, KEY, KEY, USER, USER, None, "sk-wrong", ""]).map(
    lambda k: None if k is None else f"Bearer {k}".encode()
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["valid", "valid", "valid", "chat", "chat", "completion", "json", "bytes", "path"]))
    method, path = "POST", "/v1/chat/completions"
    raw: bytes | None = None
    if kind == "valid":
        raw = json.dumps(draw(valid_chat_body)).encode()
    elif kind == "chat":
        raw = json.dumps(draw(chat_body), allow_nan=True).encode()
    elif kind == "completion":
        path = "/v1/completions"
        raw = json.dumps(draw(completion_body), allow_nan=True).encode()
    elif kind == "json":
        path = draw(st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
        raw = json.dumps(draw(any_json), allow_nan=True).encode()
    elif kind == "bytes":
        path = draw(st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
        raw = draw(st.binary(max_size=200))
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
        path = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "/v1/models",
                        "/healthz",
                        "/readyz",
                        "/metrics",
                        "/dashboard",
                        "/dashboard/api/decisions",
                        "/dashboard/api/summary",
                        "/dashboard/api/decisions/nope",
                        "/v1/chat/completions",
                        "/v1/embeddings",
                    ]
                ),
                st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/_-.%", max_size=30).map(lambda p: "/" + p.lstrip("/")),  # "//x" is a host to the client, not a path
            )
        )
        query = draw(
            st.dictionaries(st.sampled_from(["limit", "route", "cache", "since", "q"]), st.text(max_size=8), max_size=2)
        )
        if query:
            path += "?" + urlencode(query)
        raw = draw(st.one_of(st.none(), st.binary(max_size=50)))
    headers: list[tuple[bytes, bytes]] = [(k.encode(), v) for k, v in draw(control_headers).items()]
    a = draw(auth_header)
    if a is not None:
        headers.append((b"authorization", a))
    ctype = draw(
        st.sampled_from(
            [b"application/json", b"application/json", b"text/plain", b"", b"application/json; charset=latin-1"]
        )
    )
    if ctype:
        headers.append((b"content-type", ctype))
    return {"method": method, "path": path, "content": raw, "headers": headers}


# -- the app under test -------------------------------------------------------------------


def make_app() -> Any:
    s = config.from_dict(
        {
            "models": {
                "fast": {"provider": "fake", "model": "fast-model", "timeout": 5},
                "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True, "timeout": 5},
            },
            "routes": {"auto": {}, "fast": {"pin": "fast"}, "reasoning": {"pin": "reasoning"}},
            "server": {"max_body_bytes": 8192},
            "auth": {
                "keys": [
                    {"key": KEY, "admin": True, "tenant": "ops"},
                    {"key": USER, "tenant": "t", "aliases": ["auto", "fast"]},
                ]
            },
            "limits": {"rpm": 10**6, "tpm": 10**9, "max_messages": 4, "max_tokens": 50_000},
        }
    )
    keys = KeyStore.from_settings(s.auth, env={})
    log_ = MemoryDecisionLog(s.decisions)
    metrics = Metrics(CollectorRegistry())
    ups = wrap_all(
        {
            "fast": FakeUpstream("fast", "fast-model", lambda b: FakeReply("the answer is 4", token_prob=0.3)),
            "reasoning": FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="hmm")),
        },
        s.models,
    )
    return create_app(
        s,
        upstreams=ups,
        cache=build_cache(s.cache),
        log_sink=log_,
        metrics=metrics,
        routes=dashboard_routes(log_, metrics, s),
        middleware=middleware(keys, Limiter(s.limits)),
    )


def check(r: httpx.Response, req: dict[str, Any]) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500], req)
    ctype = r.headers.get("content-type", "")
    if r.status_code >= 400 and req["method"] != "HEAD":
        assert ctype.startswith("application/json"), (r.status_code, ctype, req)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str), req
        assert "Traceback" not in r.text
    if r.status_code == 200 and req["path"] in ("/v1/chat/completions", "/v1/completions"):
        if ctype.startswith("text/event-stream"):
            lines = [ln for ln in r.text.split("\n") if ln.startswith("data: ")]
            assert lines and lines[-1] == "data: [DONE]", r.text[-300:]
            for ln in lines[:-1]:
                ev = json.loads(ln[6:])
                assert "error" not in ev, ev
        else:
            body = r.json()
            assert body["object"] in ("chat.completion", "text_completion") and body["choices"], body


def test_fuzz_http_api() -> None:
    loop = asyncio.new_event_loop()
    app = make_app()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz", timeout=30)
    stats: dict[str, int] = {"cases": 0, "5xx": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(req=requests())
    def one(req: dict[str, Any]) -> None:
        stats["cases"] += 1
        try:
            r = loop.run_until_complete(
                client.request(req["method"], req["path"], content=req["content"], headers=req["headers"])
            )
        except Exception as e:  # the app raised: a client would get a 500. Record it and go on looking.
            stats["5xx"] += 1
            where = next(
                (
                    f"{os.path.relpath(f.filename)}:{f.lineno}"
                    for f in reversed(traceback.extract_tb(e.__traceback__))
                    if "/router/" in f.filename or "/policies/" in f.filename
                ),
                "?",
            )
            crashes.setdefault(f"{type(e).__name__}: {e} at {where}", req)
            return
        key = f"{r.status_code // 100}xx"
        stats[key] = stats.get(key, 0) + 1
        check(r, req)

    crashes: dict[str, dict[str, Any]] = {}
    try:
        one()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
        print("fuzz:", stats)
        for what, req in crashes.items():
            print("crash:", what, "\n   e.g.", req)
    assert stats["cases"] >= min(EXAMPLES, 100) and stats["5xx"] == 0, list(crashes)


def test_nan_and_huge_numbers_are_4xx_not_5xx() -> None:
    async def run() -> list[int]:
        app = make_app()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f") as c:
            out = []
            h = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
            for raw in (
                b'{"model":"auto","messages":[{"role":"user","content":"x"}],"temperature":NaN}',
                b'{"model":"auto","messages":[{"role":"user","content":"x"}],"max_tokens":1e400}',
                b'{"model":"auto","messages":[{"role":"user","content":"x"}],"n":' + b"9" * 5000 + b"}",
                b"[" * 5000 + b"]" * 5000,
            ):
                r = await c.post("/v1/chat/completions", content=raw, headers=h)
                out.append(r.status_code)
            return out

    statuses = asyncio.run(run())
    assert all(400 <= s < 500 or s == 200 for s in statuses), statuses
