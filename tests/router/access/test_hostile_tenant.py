"""One tenant cannot hurt another (issue 23), through the whole ASGI app: hostile bodies
are refused at parsing on every front end, a poisoned embedding batch fails only the
poisoned text, two users' different images never share a semantic cache hit (real
Redis), the decision log and its dashboard survive any request, and records are
bounded in bytes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pytest
import redis.asyncio as aredis

from router import config
from router.app import create_app
from router.cache import build_cache
from router.dashboard import routes as dashboard_routes
from router.decisions.log import RedisDecisionLog
from router.embedding.batcher import AsyncEmbedder
from router.embedding.encoders import DIM, HashEncoder
from router.upstreams.fake import FakeReply, FakeUpstream

MODELS = {
    "fast": {"provider": "fake", "model": "fast-model"},
    "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True},
}

# every front end that takes a JSON body, with a body that is valid but for one poisoned string
FRONT_ENDS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "auto", "messages": [{"role": "user", "content": "POISON"}]},
    "/v1/completions": {"model": "auto", "prompt": "POISON"},
    "/v1/responses": {"model": "auto", "input": "POISON"},
    "/v1/messages": {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": "POISON"}]},
    "/v1/messages/count_tokens": {"model": "auto", "messages": [{"role": "user", "content": "POISON"}]},
    "/v1/embeddings": {"model": "all-MiniLM-L6-v2", "input": "POISON"},
    "/admin/cache/invalidate": {"tenant": "POISON"},
}


def settings(**over: Any) -> config.Settings:
    data: dict[str, Any] = {"models": MODELS, "routes": {"auto": {}}, "selfref": {"enabled": False}}
    data.update(over)
    return config.from_dict(data)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")


def poisoned(body: dict[str, Any], escape: bytes) -> bytes:
    return json.dumps(body).encode().replace(b"POISON", b"x" + escape)


def assert_protocol_400(path: str, r: httpx.Response) -> None:
    assert r.status_code == 400, (path, r.status_code, r.text[:300])
    body = r.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_json"


# -- finding 1 (and 12): hostile JSON is a 400 at parsing, on every front end -----------------


@pytest.mark.parametrize("path", list(FRONT_ENDS))
@pytest.mark.parametrize(
    "escape",
    [b"\\ud800", b"\\udfff", b"\\uDBFF", b"\xed\xa0\x80"],  # escaped lone surrogates, and one encoded as raw bytes
    ids=["high", "low", "upper-case", "raw-utf8"],
)
async def test_lone_surrogates_are_400_on_every_front_end(path: str, escape: bytes) -> None:
    async with client_for(create_app(settings(), upstreams={n: FakeUpstream(n) for n in MODELS})) as client:
        r = await client.post(path, content=poisoned(FRONT_ENDS[path], escape), headers={"content-type": "application/json"})
        assert_protocol_400(path, r)
        # a valid surrogate pair is one character and is fine
        ok = await client.post(path, content=poisoned(FRONT_ENDS[path], b"\\ud83d\\ude00"))
        assert ok.status_code < 500, ok.text[:300]


@pytest.mark.parametrize("path", list(FRONT_ENDS))
@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "auto", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"model": "auto", "x": ' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}",
        b'{"model": "auto", "temperature": NaN}',
        b'{"model": "auto", "temperature": 1e999}',
        b'{"model": "auto", "temperature": -Infinity}',
        b'{"model": "auto", "n": ' + b"9" * 5000 + b"}",
        b'{"model": "auto", "x\\ud800": 1}',
    ],
    ids=["deep-list", "deep-object", "nan", "1e999", "-inf", "5000-digit-int", "surrogate-key"],
)
async def test_deep_nesting_and_non_finite_numbers_are_400(path: str, body: bytes) -> None:
    async with client_for(create_app(settings(), upstreams={n: FakeUpstream(n) for n in MODELS})) as client:
        assert_protocol_400(path, await client.post(path, content=body))


async def test_nan_inside_responses_tools_and_text_format_is_400() -> None:
    async with client_for(create_app(settings(), upstreams={n: FakeUpstream(n) for n in MODELS})) as client:
        for body in (
            b'{"model": "auto", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {"x": NaN}}]}',
            b'{"model": "auto", "input": "hi", "text": {"format": {"type": "json_schema", "name": "s", "schema": {"m": 1e999}}}}',
        ):
            assert_protocol_400("/v1/responses", await client.post("/v1/responses", content=body))


# -- finding 1: a failing batch fails only the text that fails alone ---------------------------


class TokenizerLike(HashEncoder):
    """As strict as the real tokenizers about text that is not valid Unicode: a batch
    holding one such text raises for the whole batch (what MiniLM's tokenizer does)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        for t in texts:
            t.encode("utf-8")  # UnicodeEncodeError on a lone surrogate, as the tokenizer
        return super().encode(texts)


async def test_a_poisoned_text_fails_alone_and_its_batch_mates_succeed() -> None:
    enc = TokenizerLike()
    embedder = AsyncEmbedder(enc, batch_max=16, batch_tokens=4096)
    try:
        texts = [f"victim question {i}" for i in range(6)] + ["x\ud800"]
        results = await asyncio.gather(*(embedder.embed_text(t) for t in texts), return_exceptions=True)
        assert all(isinstance(v, np.ndarray) for v in results[:6]), results
        assert isinstance(results[6], Exception)
        assert enc.calls[0] == 7  # they did go in one batch
    finally:
        embedder.close()


async def test_the_real_minilm_tokenizer_batch_is_isolated_too() -> None:
    """The same with the real encoder, where it is installed."""
    try:
        from router.embedding.encoders import make_encoder

        enc = make_encoder("auto")
    except Exception as e:  # noqa: BLE001 - the packaged model is optional for this unit test
        pytest.skip(f"no MiniLM encoder here: {e}")
    embedder = AsyncEmbedder(enc, batch_max=16, batch_tokens=4096)
    try:
        texts = ["what is 2+2", "name a prime", "x\ud800"]
        results = await asyncio.gather(*(embedder.embed_text(t) for t in texts), return_exceptions=True)
        assert all(isinstance(v, np.ndarray) and v.shape[-1] >= DIM for v in results[:2]), results
    finally:
        embedder.close()


async def test_an_embedding_failure_degrades_the_request_instead_of_failing_it() -> None:
    class Broken(HashEncoder):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("encoder down")

    embedder = AsyncEmbedder(Broken())
    app = create_app(settings(), upstreams={n: FakeUpstream(n) for n in MODELS}, embedder=embedder, cache=build_cache(config.CacheSettings()))
    async with client_for(app) as client:
        r = await client.post("/v1/chat/completions", json={"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    embedder.close()


# -- finding 3: non-text content, names and rules are part of the semantic scope -------------

IMAGE_A = "https://img.example/a.png"
IMAGE_B = "https://img.example/b.png"
B64_A = "data:image/png;base64," + "QUFB" * 50
B64_B = "data:image/png;base64," + "QkJC" * 50


def _about(body: dict[str, Any]) -> FakeReply:
    last = body["messages"][-1]
    parts = last["content"] if isinstance(last["content"], list) else []
    urls = [p.get("image_url", {}).get("url", "")[-12:] for p in parts if isinstance(p, dict) and p.get("type") == "image_url"]
    return FakeReply(f"about {urls} for {last.get('name')}")


def _image_turn(url: str | None, *, name: str | None = None, text: str = "Describe this image in detail.") -> dict[str, Any]:
    content: Any = [{"type": "text", "text": text}]
    if url is not None:
        content.append({"type": "image_url", "image_url": {"url": url}})
    turn: dict[str, Any] = {"role": "user", "content": content}
    if name is not None:
        turn["name"] = name
    return turn


@pytest.mark.redis
@pytest.mark.parametrize(
    ("first", "second"),
    [
        (_image_turn(IMAGE_A), _image_turn(IMAGE_B)),
        (_image_turn(B64_A), _image_turn(B64_B)),
        (_image_turn(IMAGE_A), _image_turn(None)),
        (_image_turn(None, name="alice"), _image_turn(None, name="bob")),
        (
            _image_turn(None) | {"content": [{"type": "text", "text": "Transcribe it."}, {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]},
            _image_turn(None) | {"content": [{"type": "text", "text": "Transcribe it."}, {"type": "input_audio", "input_audio": {"data": "BBBB", "format": "wav"}}]},
        ),
    ],
    ids=["image-url", "image-base64", "image-vs-none", "name", "audio"],
)
async def test_two_users_with_different_images_never_share_a_semantic_hit(
    redis_url: str, first: dict[str, Any], second: dict[str, Any]
) -> None:
    cache = build_cache(config.CacheSettings(redis_url=redis_url, timeout_ms=1000))
    embedder = AsyncEmbedder(HashEncoder())
    up = FakeUpstream("fast", "fast-model", _about)
    app = create_app(settings(routes={"auto": {"pin": "fast"}}), upstreams={"fast": up, "reasoning": FakeUpstream("reasoning")}, embedder=embedder, cache=cache)
    try:
        async with client_for(app) as client:
            one = await client.post("/v1/chat/completions", json={"model": "auto", "temperature": 0, "messages": [first], "user": "u1"})
            assert one.status_code == 200, one.text
            deadline = time.monotonic() + 3
            while cache.stats["stored"] < 1:
                assert time.monotonic() < deadline, cache.stats
                await asyncio.sleep(0.01)
            two = await client.post("/v1/chat/completions", json={"model": "auto", "temperature": 0, "messages": [second], "user": "u2"})
            assert two.status_code == 200, two.text
            assert two.headers["x-thinkgate-cache"] == "miss", (two.headers.get("x-thinkgate-similarity"), two.json())
            assert len(up.calls) == 2
            # the same turn again (other user) is still a hit: the cache keeps working
            again = await client.post("/v1/chat/completions", json={"model": "auto", "temperature": 0, "messages": [first], "user": "u3"})
            assert again.headers["x-thinkgate-cache"] in ("exact", "semantic")
    finally:
        await cache.close()
        embedder.close()


@pytest.mark.redis
async def test_the_rule_that_decided_the_route_is_part_of_the_key(redis_url: str) -> None:
    cache = build_cache(config.CacheSettings(redis_url=redis_url, timeout_ms=1000))
    s = settings(rules=[{"name": "vip", "match": {"headers": {"x-tier": ["vip"]}}, "route": "reasoning"}])
    fast, reasoning = FakeUpstream("fast", "fast-model", lambda b: FakeReply("fast answer")), FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("reasoned answer"))
    app = create_app(s, upstreams={"fast": fast, "reasoning": reasoning}, cache=cache)
    body = {"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": "plan my week"}]}
    try:
        async with client_for(app) as client:
            plain = await client.post("/v1/chat/completions", json=body)
            assert plain.headers["x-thinkgate-route"] == "fast"
            deadline = time.monotonic() + 3
            while cache.stats["stored"] < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            vip = await client.post("/v1/chat/completions", json=body, headers={"x-tier": "vip"})
            assert vip.headers["x-thinkgate-cache"] == "miss" and vip.headers["x-thinkgate-route"] == "reasoning"
            assert vip.json()["choices"][0]["message"]["content"] == "reasoned answer"
    finally:
        await cache.close()


# -- findings 5 and 6: the decision log and the dashboard survive any request ----------------


@pytest.mark.redis
async def test_hostile_model_names_never_blind_the_dashboard_and_records_are_bounded(redis_url: str) -> None:
    log = RedisDecisionLog(redis_url, config.DecisionLogSettings(redis_url=redis_url))
    s = settings(server={"max_body_bytes": 4 * 1024 * 1024})
    app = create_app(s, upstreams={n: FakeUpstream(n) for n in MODELS}, log_sink=log, routes=dashboard_routes(log, None))
    client_r = aredis.Redis.from_url(redis_url)
    try:
        async with client_for(app) as client:
            bad = await client.post("/v1/chat/completions", content=b'{"model": "a\\ud800", "messages": [{"role": "user", "content": "hi"}]}')
            assert bad.status_code == 400
            for _ in range(5):  # 1 MB model names, users and conversation ids
                big = "m" * 1_000_000
                r = await client.post(
                    "/v1/chat/completions",
                    json={"model": big, "user": big, "messages": [{"role": "user", "content": "hi"}]},
                    headers={"x-thinkgate-conversation": "c" * 4000},
                )
                assert r.status_code in (400, 404), r.text[:200]
            ok = await client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
            assert ok.status_code == 200
            await asyncio.sleep(0.2)
            entries = await client_r.xrange(log.key)
            assert entries, "the requests were recorded"
            largest = max(len(fields[b"d"]) for _, fields in entries)
            assert largest < 16 * 1024, largest
            # a record written by anything (an older version, a hand edit) cannot blind it either
            for rec in (
                {"id": "x1", "created": time.time(), "alias": "a\ud800", "route": "fast", "status": 200},
                {"id": "x2", "created": "yesterday", "route": ["fast"], "status": "bad"},
                {"id": "x3", "created": time.time(), "deer": {"thinking_tokens": "many"}, "cost": float("nan")},
                ["not", "a", "record"],
            ):
                await client_r.xadd(log.key, {"id": "x", "d": json.dumps(rec)})
            summary = await client.get("/dashboard/api/summary")
            assert summary.status_code == 200, summary.text[:300]
            listed = await client.get("/dashboard/api/decisions")
            assert listed.status_code == 200, listed.text[:300]
    finally:
        await client_r.aclose()
        await log.close()



# -- finding 4: token limits are charged on streams from the pipeline's own counts ------------


def _keyed_app(limits: dict[str, Any], keys: list[dict[str, Any]], upstream: FakeUpstream | None = None, **kw: Any) -> Any:
    from router.access.auth import KeyStore
    from router.access.limits import Limiter
    from router.access.middleware import middleware

    s = settings(auth={"keys": keys}, limits=limits, **kw)
    ups = {"fast": upstream or FakeUpstream("fast", "fast-model"), "reasoning": FakeUpstream("reasoning", "reasoning-model")}
    return create_app(s, upstreams=ups, middleware=middleware(KeyStore.from_settings(s.auth, env={}), Limiter(s.limits)))


async def test_streams_are_charged_against_the_token_limit_without_include_usage() -> None:
    words = " ".join(f"w{i}" for i in range(2000))  # a 2,000-token answer
    app = _keyed_app({"tpm": 3000}, [{"key": "sk-tpm-tenant-0123456789", "tenant": "t"}], FakeUpstream("fast", "fast-model", lambda b: FakeReply(words)))
    h = {"authorization": "Bearer sk-tpm-tenant-0123456789"}
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "write a lot"}]}
    async with client_for(app) as client:
        codes = [(await client.post("/v1/chat/completions", json=body, headers=h)).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429], codes  # before: four 200s


# -- finding 7: an embeddings request is cancelled when its client leaves; bulk waits --------


class SlowEncoder(HashEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(0.01 * len(texts))
        self.texts.extend(texts)
        return super().encode(texts)


async def test_embeddings_work_stops_when_the_client_leaves() -> None:
    enc = SlowEncoder()
    embedder = AsyncEmbedder(enc, batch_max=1)
    app = create_app(settings(embeddings={"models": {"local": {"provider": "local"}}}), upstreams={n: FakeUpstream(n) for n in MODELS}, embedder=embedder)
    body = json.dumps({"model": "local", "input": [f"doc {i}" for i in range(300)]}).encode()
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/embeddings", "headers": [(b"content-type", b"application/json")], "query_string": b"", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": "", "http_version": "1.1", "asgi": {"version": "3.0"}}
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.sleep(0.3)
    gone.set()  # the client hangs up after ~30 of 300 texts
    await asyncio.wait_for(task, 10)
    done = len(enc.texts)
    await asyncio.sleep(0.5)
    assert len(enc.texts) <= done + 2 < 300, (done, len(enc.texts))  # before: all 300 were embedded anyway
    embedder.close()


async def test_routing_texts_go_ahead_of_bulk_embeddings() -> None:
    enc = SlowEncoder()
    embedder = AsyncEmbedder(enc, batch_max=1)
    bulk = asyncio.gather(*(embedder.embed_text(f"bulk {i}", bulk=True) for i in range(100)))
    await asyncio.sleep(0.05)
    t = time.perf_counter()
    await embedder.embed_text("a chat request")
    waited = time.perf_counter() - t
    assert enc.texts.index("a chat request") < 20 and waited < 0.5, (enc.texts.index("a chat request"), waited)
    await bulk
    embedder.close()


async def test_embeddings_over_the_per_request_budget_are_refused_before_any_work() -> None:
    enc = SlowEncoder()
    embedder = AsyncEmbedder(enc)
    app = create_app(settings(embeddings={"models": {"local": {"provider": "local"}}, "max_local_chars": 10_000}), upstreams={n: FakeUpstream(n) for n in MODELS}, embedder=embedder)
    async with client_for(app) as client:
        r = await client.post("/v1/embeddings", json={"model": "local", "input": ["x" * 2000] * 6})
    assert r.status_code == 400 and "budget" in r.json()["error"]["message"] and enc.texts == []
    embedder.close()


# -- finding 9: one key cannot take every stream slot -----------------------------------------


async def test_one_key_cannot_hold_every_stream_slot() -> None:
    slow = FakeUpstream("fast", "fast-model", lambda b: FakeReply("a b c d e f g h"))
    slow.chunk_delay = 0.2
    keys = [{"key": "sk-hog-0123456789", "tenant": "hog"}, {"key": "sk-other-0123456789", "tenant": "other"}]
    app = _keyed_app({"max_concurrent_streams": 4}, keys, slow)
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with client_for(app) as client:
        hog = [asyncio.create_task(client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-hog-0123456789"})) for _ in range(4)]
        await asyncio.sleep(0.1)
        other = await client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-other-0123456789"})
        codes = sorted(r.status_code for r in await asyncio.gather(*hog))
    assert other.status_code == 200, other.text  # before: 429 too_many_streams
    assert codes == [200, 200, 200, 429]


# -- findings 10, 11: no credentials in /readyz, no upstream words to the client -------------


async def test_readyz_masks_credentials_in_urls() -> None:
    class Leaky(FakeUpstream):
        async def ready(self) -> dict[str, Any]:
            return {"ok": True, "base": "https://user:s3cret@llm.example/v1?api_key=s3cret2"}

    app = create_app(settings(), upstreams={"fast": Leaky("fast"), "reasoning": FakeUpstream("reasoning")})
    async with client_for(app) as client:
        r = await client.get("/readyz")
    assert r.status_code == 200 and "s3cret" not in r.text and "llm.example" in r.text


async def test_upstream_error_texts_never_reach_the_client_or_the_record() -> None:
    from aiohttp import web

    from router.decisions.log import MemoryDecisionLog

    async def rejecting(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"bad request; you sent {request.headers.get('authorization')}"}}, status=400)

    up = web.Application()
    up.router.add_post("/v1/chat/completions", rejecting)
    runner = web.AppRunner(up)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/v1"
    s = config.from_dict({
        "models": {"fast": {"provider": "openai", "model": "m", "api_base": base, "api_key": "sk-provider-secret"},
                   "reasoning": {"provider": "openai", "model": "m", "api_base": base, "api_key": "sk-provider-secret", "reasoning": True}},
        "routes": {"auto": {"pin": "fast"}}, "selfref": {"enabled": False}, "classifier": {"enabled": False},
    })  # fmt: skip
    from router.upstreams import build_upstream

    log = MemoryDecisionLog(s.decisions)
    app = create_app(s, upstreams={n: build_upstream(n, ms) for n, ms in s.models.items()}, log_sink=log)
    try:
        async with client_for(app) as client:
            r = await client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "sk-provider-secret" not in r.text, r.text
        assert all("sk-provider-secret" not in json.dumps(rec) for rec in await log.recent(10))
    finally:
        await runner.cleanup()


# -- finding 13: previous_response_id history is bound by the body limit ---------------------


async def test_a_previous_response_chain_is_bound_by_the_body_limit() -> None:
    app = create_app(settings(server={"max_body_bytes": 300_000}), upstreams={n: FakeUpstream(n) for n in MODELS})
    async with client_for(app) as client:
        prev = None
        codes = []
        for i in range(4):  # 4 turns of ~100 KB each (each echoed back, so the history doubles)
            body: dict[str, Any] = {"model": "auto", "input": f"{i} " + "y" * 100_000}
            if prev:
                body["previous_response_id"] = prev
            r = await client.post("/v1/responses", json=body)
            codes.append(r.status_code)
            if r.status_code != 200:
                break
            prev = r.json()["id"]
    assert codes[-1] == 413 and codes[0] == 200, codes  # before: every turn went upstream, history unbounded


# -- finding 14: slow bodies time out; the dashboard is framed by no one ----------------------


async def test_a_body_that_stalls_is_a_408() -> None:
    app = create_app(settings(server={"body_timeout_s": 0.2}), upstreams={n: FakeUpstream(n) for n in MODELS})
    sent: list[dict[str, Any]] = []
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b'{"model": "auto", ', "more_body": True}
        await asyncio.sleep(30)  # the rest never comes
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "query_string": b"", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": "", "http_version": "1.1", "asgi": {"version": "3.0"}}
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert sent[0]["status"] == 408


async def test_the_dashboard_sends_csp_frame_and_nosniff_headers() -> None:
    from router.decisions.log import MemoryDecisionLog

    log = MemoryDecisionLog()
    app = create_app(settings(), upstreams={n: FakeUpstream(n) for n in MODELS}, log_sink=log, routes=dashboard_routes(log, None))
    async with client_for(app) as client:
        for path in ("/dashboard", "/dashboard/static/dashboard.js"):
            r = await client.get(path)
            assert r.status_code == 200
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"] and "script-src 'self'" in r.headers["content-security-policy"]
            assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/dashboard/api/summary")).headers["x-content-type-options"] == "nosniff"
