"""n > 1 through the app: n concurrent calls re-indexed with usage summed, or the
upstream's own n; streams interleaved by choice index; Self-Ref on every choice;
the cache storing and replaying all choices."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest

from router import config, errors
from router.app import create_app
from router.cache import build_cache
from router.upstreams.fake import FakeReply, FakeUpstream
from router.upstreams.openai_compat import OpenAICompatUpstream
from router.upstreams.strict_server import StrictOpenAIServer


def settings(**over: Any) -> config.Settings:
    data: dict[str, Any] = {
        "models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake", "reasoning": True}},
        "selfref": {"enabled": False},
        "cache": {"enabled": False},
    }
    data.update(over)
    return config.from_dict(data)


def numbered() -> Any:
    counter = itertools.count()
    return lambda body: FakeReply(f"answer {next(counter)}")


def client_for(s: config.Settings, fast: Any, reasoning: Any = None, **kw: Any) -> httpx.AsyncClient:
    app = create_app(s, upstreams={"fast": fast, "reasoning": reasoning or FakeUpstream("reasoning", "r")}, **kw)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


async def test_chat_n3_fans_out_and_sums_usage():
    fast = FakeUpstream("fast", "f", numbered())
    client = client_for(settings(), fast)
    one = (await client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "q"}]})).json()
    fast.calls.clear()
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "auto", "n": 3, "messages": [{"role": "user", "content": "q"}]},
        headers={"x-thinkgate-debug": "1"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert sorted(c["message"]["content"] for c in body["choices"]) == ["answer 1", "answer 2", "answer 3"]
    assert len(fast.calls) == 3 and all("n" not in c for c in fast.calls)
    assert body["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]
    assert body["usage"]["prompt_tokens"] == 3 * one["usage"]["prompt_tokens"]
    assert body["thinkgate"]["n"] == 3 and body["thinkgate"]["fanout"] is True


async def test_completions_n2():
    client = client_for(settings(), FakeUpstream("fast", "f", numbered()))
    r = await client.post("/v1/completions", json={"model": "auto", "n": 2, "prompt": "q"})
    assert r.status_code == 200, r.text
    assert [(c["index"], c["text"]) for c in r.json()["choices"]] == [(0, "answer 0"), (1, "answer 1")]


async def test_streaming_n2_chunks_carry_their_index():
    client = client_for(settings(), FakeUpstream("fast", "f", numbered()))
    body = {"model": "auto", "n": 2, "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "q"}]}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    chunks = events(r.text)
    by: dict[int, list[dict[str, Any]]] = {}
    for ch in chunks:
        for c in ch["choices"]:
            by.setdefault(c["index"], []).append(c)
    assert set(by) == {0, 1}
    for cs in by.values():
        assert cs[0]["delta"]["role"] == "assistant"
        assert cs[-1]["finish_reason"] == "stop"
    texts = sorted("".join(c["delta"].get("content") or "" for c in cs) for cs in by.values())
    assert texts == ["answer 0", "answer 1"]
    usage = [ch["usage"] for ch in chunks if ch.get("usage")]
    assert len(usage) == 1 and usage[0]["completion_tokens"] == 4  # 2 tokens per choice


@pytest.mark.parametrize("n", [0, -1, 9])
async def test_bad_n_is_a_400(n: int):
    client = client_for(settings(), FakeUpstream("fast", "f"))
    r = await client.post("/v1/chat/completions", json={"model": "auto", "n": n, "messages": [{"role": "user", "content": "q"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"


async def test_one_failed_call_fails_the_request():
    calls = itertools.count()

    def flaky(body: dict[str, Any]) -> FakeReply:
        if next(calls) == 1:
            raise errors.UpstreamRejected("upstream fast rejected the request: bad", upstream="fast")
        return FakeReply("ok")

    s = settings(routes={"auto": {"fallback": False}})
    client = client_for(s, FakeUpstream("fast", "f", flaky))
    r = await client.post("/v1/chat/completions", json={"model": "auto", "n": 3, "messages": [{"role": "user", "content": "q"}]})
    assert r.status_code == 400 and "rejected" in r.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_native_n_passes_through_to_the_upstream(stream: bool):
    async with StrictOpenAIServer() as strict:
        s = settings(models={"fast": {"provider": "openai", "model": "m", "api_base": strict.api_base, "native_n": True}, "reasoning": {"provider": "fake"}})
        up = OpenAICompatUpstream("fast", "m", strict.api_base)
        client = client_for(s, up)
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "n": 2, "stream": stream, "messages": [{"role": "user", "content": "q"}]},
            headers={"x-thinkgate-debug": "1"},
        )
        await up.close()
    assert r.status_code == 200, r.text
    assert len(strict.accepted) == 1 and strict.accepted[0]["n"] == 2
    if stream:
        chunks = events(r.text)
        assert {c["index"] for ch in chunks for c in ch["choices"]} == {0, 1}
        assert chunks[-1]["thinkgate"]["fanout"] is False
    else:
        assert [c["index"] for c in r.json()["choices"]] == [0, 1]
        assert r.json()["thinkgate"]["fanout"] is False


@pytest.mark.parametrize("stream", [False, True])
async def test_selfref_escalates_when_any_choice_is_unsure(stream: bool):
    probs = itertools.cycle([0.99, 0.2])
    fast = FakeUpstream("fast", "f", lambda b: FakeReply("fast answer", token_prob=next(probs)))
    think = FakeUpstream("reasoning", "r", lambda b: FakeReply("slow answer"))
    s = settings(selfref={"enabled": True, "threshold": 0.5})
    client = client_for(s, fast, think)
    body = {"model": "auto", "n": 2, "stream": stream, "messages": [{"role": "user", "content": "q"}]}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-thinkgate-escalated"] == "true" and len(think.calls) == 2
    if stream:
        texts: dict[int, str] = {}
        for ch in events(r.text):
            for c in ch["choices"]:
                texts[c["index"]] = texts.get(c["index"], "") + (c["delta"].get("content") or "")
        assert texts == {0: "slow answer", 1: "slow answer"}
    else:
        assert [c["message"]["content"] for c in r.json()["choices"]] == ["slow answer", "slow answer"]


async def test_cache_stores_and_replays_all_choices():
    s = settings(cache={"enabled": True, "semantic": False})
    fast = FakeUpstream("fast", "f", numbered())
    app = create_app(s, upstreams={"fast": fast, "reasoning": FakeUpstream("reasoning", "r")}, cache=build_cache(s.cache))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")
    body = {"model": "auto", "n": 2, "temperature": 0, "messages": [{"role": "user", "content": "q"}]}
    first = await client.post("/v1/chat/completions", json=body)
    await app.state.pipeline.drain()
    again = await client.post("/v1/chat/completions", json=body)
    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
    assert again.headers["x-thinkgate-cache"] == "exact" and streamed.headers["x-thinkgate-cache"] == "exact"
    assert again.json()["choices"] == first.json()["choices"] and len(fast.calls) == 2
    texts = {}
    for ch in events(streamed.text):
        for c in ch["choices"]:
            texts[c["index"]] = texts.get(c["index"], "") + (c["delta"].get("content") or "")
    assert texts == {c["index"]: c["message"]["content"] for c in first.json()["choices"]}
    one = await client.post("/v1/chat/completions", json={**body, "n": 1})
    assert one.headers["x-thinkgate-cache"] == "miss"  # n is part of the key


async def test_completions_streaming_n2():
    client = client_for(settings(), FakeUpstream("fast", "f", numbered()))
    r = await client.post("/v1/completions", json={"model": "auto", "n": 2, "stream": True, "prompt": "q"})
    assert r.status_code == 200
    texts: dict[int, str] = {}
    for ch in events(r.text):
        for c in ch["choices"]:
            texts[c["index"]] = texts.get(c["index"], "") + (c.get("text") or "")
    assert sorted(texts.values()) == ["answer 0", "answer 1"] and set(texts) == {0, 1}


async def test_a_client_leaving_an_n3_stream_cancels_every_upstream_stream():
    from router.api.protocol import parse_request
    from router.pipeline.core import Pipeline

    fast = FakeUpstream("fast", "f", lambda b: FakeReply("one two three four five six"), chunk_delay=0.05)
    pipeline = Pipeline(settings(), {"fast": fast, "reasoning": FakeUpstream("reasoning", "r")})
    raw = json.dumps({"model": "auto", "n": 3, "stream": True, "messages": [{"role": "user", "content": "q"}]}).encode()
    reply = await pipeline.handle(parse_request("chat", raw, {}))
    assert reply.chunks is not None
    await reply.chunks.__anext__()
    await reply.chunks.aclose()  # type: ignore[attr-defined]
    assert fast.cancelled_streams == 3
    assert reply.decision.status == 499
