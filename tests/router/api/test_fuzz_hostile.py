"""Hostile-input fuzz over every front end (issue 23): chat, completions, Responses,
Messages, embeddings. A valid body for each has one value replaced by something
hostile: strings drawn from all of Unicode *including lone surrogates* (sent as JSON
escapes and as raw bytes), nesting up to 3,000 deep, huge and non-finite numbers,
strings up to 1 MB. The app runs with auth, limits, the cache, the decision log and
an embedder as strict about invalid Unicode as the real tokenizer.

Properties: no 5xx, every error is in the front end's protocol shape, the app still
answers a plain request afterwards, RSS grows by a bounded amount.
THINKGATE_HOSTILE_FUZZ_EXAMPLES scales the run (default 250 per front end, ~1 min)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import traceback
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pytest
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
from router.embedding.batcher import AsyncEmbedder
from router.embedding.encoders import HashEncoder
from router.upstreams.fake import FakeReply, FakeUpstream

EXAMPLES = int(os.environ.get("THINKGATE_HOSTILE_FUZZ_EXAMPLES", "250"))
KEY = "sk-hostile-fuzz-0123456789"
HOLE = "\x00HOLE\x00"  # where the hostile value goes

FRONT_ENDS: dict[str, list[dict[str, Any]]] = {
    "/v1/chat/completions": [
        {"model": HOLE, "messages": [{"role": "user", "content": "hi"}]},
        {"model": "auto", "messages": [{"role": "user", "content": HOLE}]},
        {"model": "auto", "messages": [{"role": "user", "content": [{"type": "text", "text": HOLE}]}], "temperature": 0},
        {"model": "auto", "messages": [{"role": "user", "content": "hi", "name": HOLE}], "stream": True},
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "user": HOLE, "metadata": {"k": HOLE}},
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": HOLE},
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": HOLE}}]},
    ],
    "/v1/completions": [
        {"model": "auto", "prompt": HOLE},
        {"model": "auto", "prompt": "hi", "max_tokens": HOLE},
        {"model": "auto", "prompt": "hi", "stop": HOLE, "stream": True},
    ],
    "/v1/responses": [
        {"model": "auto", "input": HOLE},
        {"model": "auto", "input": [{"role": "user", "content": [{"type": "input_text", "text": HOLE}]}]},
        {"model": "auto", "input": "hi", "instructions": HOLE},
        {"model": "auto", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": HOLE}]},
        {"model": "auto", "input": "hi", "text": {"format": {"type": "json_schema", "name": "s", "schema": HOLE}}},
        {"model": "auto", "input": "hi", "metadata": {"k": HOLE}, "stream": True},
    ],
    "/v1/messages": [
        {"model": "auto", "max_tokens": 32, "messages": [{"role": "user", "content": HOLE}]},
        {"model": "auto", "max_tokens": 32, "system": HOLE, "messages": [{"role": "user", "content": "hi"}]},
        {"model": "auto", "max_tokens": HOLE, "messages": [{"role": "user", "content": "hi"}]},
        {"model": "auto", "max_tokens": 32, "messages": [{"role": "user", "content": [{"type": "text", "text": HOLE}]}], "stream": True},
        {"model": "auto", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": HOLE}},
    ],
    "/v1/embeddings": [
        {"model": "local", "input": HOLE},
        {"model": "local", "input": ["a", HOLE]},
        {"model": HOLE, "input": "a"},
        {"model": "local", "input": "a", "dimensions": HOLE},
    ],
}
PLAIN = {
    "/v1/chat/completions": {"model": "auto", "messages": [{"role": "user", "content": "still up?"}]},
    "/v1/completions": {"model": "auto", "prompt": "still up?"},
    "/v1/responses": {"model": "auto", "input": "still up?"},
    "/v1/messages": {"model": "auto", "max_tokens": 32, "messages": [{"role": "user", "content": "still up?"}]},
    "/v1/embeddings": {"model": "local", "input": "still up?"},
}

# -- hostile values ------------------------------------------------------------------------

# all of Unicode, surrogates (category Cs) included
any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
lone = st.integers(0xD800, 0xDFFF).map(chr)
unicode_text = st.one_of(st.text(any_char, max_size=40), st.lists(st.one_of(any_char, lone), min_size=1, max_size=10).map("".join))
huge_text = st.sampled_from([1_000, 100_000, 1_000_000]).flatmap(lambda n: st.sampled_from(["x" * n, "\ud800" * (n // 8), "🙂" * (n // 4)]))
scalar = st.one_of(
    unicode_text,
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
value = st.recursive(scalar, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(unicode_text, c, max_size=3)), max_leaves=8)
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 5000, b"1" + b"0" * 400, b"1e-999"]


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """One JSON value as raw bytes, possibly not JSON Python would write."""
    kind = draw(st.sampled_from(["value", "value", "huge", "deep", "number", "raw-surrogate"]))
    if kind == "value":
        return json.dumps(draw(value)).encode()
    if kind == "huge":
        return json.dumps(draw(huge_text)).encode()
    if kind == "deep":
        n = draw(st.sampled_from([10, 63, 64, 65, 100, 1000, 3000]))
        o, c = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return o * n + b"1" + c * n
    if kind == "number":
        return draw(st.sampled_from(RAW_TOKENS))
    # a surrogate encoded as (invalid) UTF-8 bytes: valid to json.loads(bytes), not to anything after it
    text = draw(unicode_text)
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def cases(draw: st.DrawFn, path: str) -> bytes:
    template = json.dumps(draw(st.sampled_from(FRONT_ENDS[path])))
    return template.replace(json.dumps(HOLE), "\x00").encode().replace(b"\x00", draw(hostile()))


# -- the app -------------------------------------------------------------------------------


class StrictEncoder(HashEncoder):
    """Raises on text that is not valid Unicode, for the whole batch, as MiniLM's tokenizer."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        for t in texts:
            t.encode("utf-8")
        return super().encode(texts)


def make_app() -> tuple[Any, AsyncEmbedder]:
    s = config.from_dict(
        {
            "models": {
                "fast": {"provider": "fake", "model": "fast-model"},
                "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True},
            },
            "routes": {"auto": {}},
            "selfref": {"enabled": False},
            "server": {"max_body_bytes": 4 * 1024 * 1024},
            "auth": {"keys": [{"key": KEY, "admin": True, "tenant": "fuzz"}]},
            "limits": {"rpm": 10**7, "tpm": 10**12, "max_tokens": 100_000},
            "embeddings": {"models": {"local": {"provider": "local"}}},
            "decisions": {"store_prompt": True},
        }
    )
    keys = KeyStore.from_settings(s.auth, env={})
    log_ = MemoryDecisionLog(s.decisions)
    metrics = Metrics(CollectorRegistry())
    embedder = AsyncEmbedder(StrictEncoder())
    app = create_app(
        s,
        upstreams={"fast": FakeUpstream("fast", "fast-model"), "reasoning": FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="hmm"))},
        embedder=embedder,
        cache=build_cache(s.cache),
        log_sink=log_,
        metrics=metrics,
        routes=dashboard_routes(log_, metrics, s),
        middleware=middleware(keys, Limiter(s.limits)),
    )
    return app, embedder


def rss_mb() -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", open("/proc/self/status").read())  # noqa: SIM115
    return int(m[1]) / 1024 if m else 0.0


@pytest.mark.parametrize("path", list(FRONT_ENDS))
def test_hostile_fuzz_front_end(path: str) -> None:
    loop = asyncio.new_event_loop()
    app, embedder = make_app()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz", timeout=60)
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    stats: dict[str, int] = {"cases": 0, "5xx": 0}
    crashes: dict[str, bytes] = {}
    rss0 = rss_mb()

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )  # fmt: skip
    @given(body=cases(path))
    def one(body: bytes) -> None:
        stats["cases"] += 1
        try:
            r = loop.run_until_complete(client.post(path, content=body, headers=headers))
        except Exception as e:  # noqa: BLE001 - the app raised: a client would get a 500
            stats["5xx"] += 1
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f"{f.filename}:{f.lineno}" for f in reversed(tb) if "/router/" in f.filename), "?")
            crashes.setdefault(f"{type(e).__name__} at {where}", body[:300])
            return
        stats[f"{r.status_code // 100}xx"] = stats.get(f"{r.status_code // 100}xx", 0) + 1
        if r.status_code >= 500:
            stats["5xx"] += 1
            crashes.setdefault(f"HTTP {r.status_code}: {r.text[:200]}", body[:300])
            return
        if r.status_code >= 400:
            err = r.json()
            if path == "/v1/messages":
                assert err["type"] == "error" and isinstance(err["error"]["message"], str), err
            else:
                assert isinstance(err["error"]["message"], str), err

    try:
        one()
        after = loop.run_until_complete(client.post(path, json=PLAIN[path], headers=headers))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
        embedder.close()
    grown = rss_mb() - rss0
    print(f"\nhostile fuzz {path}: {stats}, RSS +{grown:.0f} MB")
    assert not crashes, crashes
    assert after.status_code == 200, after.text[:300]  # still up
    assert grown < 400, grown  # bounded: no leak per case (cases are up to 1 MB each)
