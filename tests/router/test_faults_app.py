"""Upstream faults through HTTP: retries, the circuit breaker and route fallback,
seen from the client (status, body, headers) and from the decision records."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import httpx
import pytest

from router import config, errors
from router.app import create_app
from router.types import Decision
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeReply, FakeUpstream, failing
from router.upstreams.resilient import CircuitBreaker, ResilientUpstream, wrap_all

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi there"}]}
REASONING = {"x-thinkgate-force-route": "reasoning"}


class Sink:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self.pipeline: Any = None

    async def append(self, d: Decision) -> None:
        self.decisions.append(d)

    async def all(self) -> list[Decision]:
        await self.pipeline.drain()  # records are appended in the background after the reply
        return self.decisions


def settings(timeout: float = 5.0, retries: int = 2, **over: Any) -> config.Settings:
    data: dict[str, Any] = {
        "models": {
            "fast": {"provider": "fake", "model": "fast-model", "timeout": timeout, "retries": retries},
            "reasoning": {
                "provider": "fake",
                "model": "reasoning-model",
                "reasoning": True,
                "timeout": timeout,
                "retries": retries,
            },
        },
        "routes": {"auto": {}, "nofallback": {"fallback": False}},
        "selfref": {"enabled": False},
        "limits": {"breaker": {"failures": 3, "cooldown_s": 5, "backoff_s": 0.001, "max_backoff_s": 0.002}},
    }
    data.update(over)
    return config.from_dict(data)


def build(s: config.Settings, fast: Any, reasoning: Any, wrapped: dict[str, Any] | None = None):
    ups = wrapped or wrap_all({"fast": fast, "reasoning": reasoning}, s.models, s.limits.breaker)
    sink = Sink()
    app = create_app(s, upstreams=ups, log_sink=sink)
    sink.pipeline = app.state.pipeline
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg", timeout=30)
    return client, ups, sink


def reasoner() -> FakeUpstream:
    return FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="think hard"))


def sse_events(text: str) -> list[Any]:
    out = []
    for line in text.split("\n"):
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def assert_clean_error(r: httpx.Response, statuses: tuple[int, ...] = (502, 503, 504)) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in r.text
    return err


# -- fallback across routes -----------------------------------------------------------------


async def test_reasoning_down_falls_back_to_fast_and_is_recorded():
    s = settings()
    down = FakeUpstream(
        "reasoning", "reasoning-model", failing(errors.UpstreamUnavailable("boom", upstream="reasoning"))
    )
    client, ups, sink = build(s, FakeUpstream("fast", "fast-model"), down)
    r = await client.post("/v1/chat/completions", json=CHAT, headers=REASONING)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: hi there"
    assert r.headers["x-thinkgate-fallback"] == "reasoning" and r.headers["x-thinkgate-route"] == "fast"
    assert len(down.calls) == 3  # one try + two retries before falling back
    d = (await sink.all())[-1]
    assert d.fallback_from == "reasoning" and d.reason == "fallback" and d.upstream == "fast" and d.status == 200

    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=REASONING)
    events = sse_events(r.text)
    assert (
        r.status_code == 200
        and events[-1] == "[DONE]"
        and not any(isinstance(e, dict) and "error" in e for e in events)
    )
    assert r.headers["x-thinkgate-fallback"] == "reasoning"


async def test_fast_down_falls_back_to_reasoning():
    s = settings()
    down = FakeUpstream("fast", "fast-model", failing(errors.UpstreamTimeout("slow", upstream="fast")))
    client, ups, sink = build(s, down, reasoner())
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "42"
    assert r.headers["x-thinkgate-fallback"] == "fast" and r.headers["x-thinkgate-route"] == "reasoning"
    assert (await sink.all())[-1].fallback_from == "fast"


async def test_no_route_can_answer_is_a_clean_503():
    s = settings()
    fast = FakeUpstream("fast", "fast-model", failing(errors.UpstreamUnavailable("fast down", upstream="fast")))
    slow = FakeUpstream(
        "reasoning", "reasoning-model", failing(errors.UpstreamUnavailable("reasoning down", upstream="reasoning"))
    )
    client, ups, sink = build(s, fast, slow)
    r = await client.post("/v1/chat/completions", json=CHAT)
    err = assert_clean_error(r, (503,))
    assert err["type"] == "upstream_error" and "down" in err["message"]
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert_clean_error(r, (503,))
    assert (await sink.all())[-1].status == 503 and (await sink.all())[-1].error


async def test_fallback_off_and_client_errors_do_not_fall_back():
    s = settings()
    down = FakeUpstream("fast", "fast-model", failing(errors.UpstreamUnavailable("down", upstream="fast")))
    client, ups, sink = build(s, down, reasoner())
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "nofallback"})
    assert_clean_error(r, (503,))
    assert len(ups["reasoning"].calls) == 0

    rejected = FakeUpstream("fast", "fast-model", failing(errors.UpstreamRejected("bad tool schema", upstream="fast")))
    client, ups, sink = build(s, rejected, reasoner())
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 400 and r.json()["error"]["code"] == "upstream_rejected"
    assert len(rejected.calls) == 1 and len(ups["reasoning"].calls) == 0


async def test_timeout_falls_back():
    s = settings(timeout=0.2, retries=0)
    client, ups, sink = build(s, FakeUpstream("fast", "fast-model", delay=5), reasoner())
    t0 = time.monotonic()
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert time.monotonic() - t0 < 2
    assert r.status_code == 200 and r.headers["x-thinkgate-fallback"] == "fast"


# -- the circuit breaker, seen through HTTP --------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_breaker_opens_then_falls_back_immediately_then_closes():
    s = settings(retries=0)
    healthy = False

    def handler(body: dict[str, Any]) -> FakeReply:
        if not healthy:
            raise errors.UpstreamUnavailable("reasoning down", upstream="reasoning")
        return FakeReply("42", reasoning="ok")

    clock = Clock()
    raw = FakeUpstream("reasoning", "reasoning-model", handler)
    b = s.limits.breaker
    ups = {
        "fast": ResilientUpstream(FakeUpstream("fast", "fast-model"), retries=0, settings=b),
        "reasoning": ResilientUpstream(raw, retries=0, settings=b, breaker=CircuitBreaker("reasoning", b, clock=clock)),
    }
    client, _, sink = build(s, None, None, wrapped=ups)
    for _ in range(10):
        r = await client.post("/v1/chat/completions", json=CHAT, headers=REASONING)
        assert r.status_code == 200 and r.headers["x-thinkgate-fallback"] == "reasoning"
    assert len(raw.calls) == 3  # opened after 3 failures; the next 7 fell back without calling it
    ready = (await client.get("/readyz")).json()
    assert ready["checks"]["upstream:reasoning"]["breaker"] == "open"

    healthy = True
    clock.t += 5  # cooldown over: the next request is the half-open probe
    r = await client.post("/v1/chat/completions", json=CHAT, headers=REASONING)
    assert (
        r.status_code == 200
        and "x-thinkgate-fallback" not in r.headers
        and r.headers["x-thinkgate-route"] == "reasoning"
    )
    assert ups["reasoning"].breaker.state == "closed"
    assert (await client.get("/readyz")).json()["checks"]["upstream:reasoning"]["breaker"] == "closed"
    assert [d.fallback_from for d in await sink.all()].count("reasoning") == 10


# -- fault injection under load -----------------------------------------------------------


def flaky(name: str, model: str, rate: float, seed: int, reply: FakeReply | None = None) -> FakeUpstream:
    rng = random.Random(seed)
    kinds = [errors.UpstreamUnavailable, errors.UpstreamTimeout, errors.UpstreamError]

    def handler(body: dict[str, Any]) -> FakeReply:
        if rng.random() < rate:
            raise rng.choice(kinds)(f"injected fault in {name}", upstream=name)
        return reply or FakeReply(f"answer from {name}")

    return FakeUpstream(name, model, handler)


async def test_30_percent_5xx_on_both_routes_every_request_answers_or_fails_cleanly():
    s = settings()
    fast = flaky("fast", "fast-model", 0.3, seed=1)
    slow = flaky("reasoning", "reasoning-model", 0.3, seed=2, reply=FakeReply("42", reasoning="r"))
    client, ups, sink = build(s, fast, slow)
    n, gate = 400, asyncio.Semaphore(16)
    outcomes: dict[str, int] = {}

    async def one(i: int) -> None:
        stream = i % 2 == 1
        headers = REASONING if i % 4 >= 2 else {}
        async with gate:
            r = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream}, headers=headers)
        if r.status_code == 200:
            if stream:
                events = sse_events(r.text)
                assert events[-1] == "[DONE]"
                assert not any(isinstance(e, dict) and "error" in e for e in events)
            else:
                assert r.json()["choices"][0]["message"]["content"]
            key = "ok_fallback" if "x-thinkgate-fallback" in r.headers else "ok"
        else:
            assert_clean_error(r)
            key = f"error_{r.status_code}"
        outcomes[key] = outcomes.get(key, 0) + 1

    await asyncio.gather(*(one(i) for i in range(n)))
    print("30% 5xx outcomes:", outcomes, "fast attempts", len(fast.calls), "reasoning attempts", len(slow.calls))
    assert sum(outcomes.values()) == n
    failed = sum(v for k, v in outcomes.items() if k.startswith("error"))
    assert failed <= 4, outcomes  # expected ~0.07 %: both routes failing after their retries
    assert outcomes.get("ok_fallback", 0) >= 1
    assert len(await sink.all()) == n


async def test_stream_stalling_mid_way_ends_with_an_error_event():
    s = settings(timeout=0.2, retries=2)

    class Stalling(FakeUpstream):
        async def stream(self, body: dict[str, Any], ctx: CallContext):
            n = 0
            async for c in super().stream(body, ctx):
                yield c
                n += 1
                if n == 2:
                    await asyncio.sleep(30)

    stalling = Stalling("fast", "fast-model", lambda b: "one two three four five")
    client, ups, sink = build(s, stalling, reasoner())
    t0 = time.monotonic()
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert time.monotonic() - t0 < 3
    events = sse_events(r.text)
    assert r.status_code == 200 and events[-1] == "[DONE]"
    errs = [e for e in events if isinstance(e, dict) and "error" in e]
    assert len(errs) == 1 and errs[0]["error"]["code"] == "upstream_timeout"
    assert len(stalling.calls) == 1  # not retried after output began: no duplicated text
    await asyncio.sleep(0.05)
    assert stalling.cancelled_streams == 1
    assert (await sink.all())[-1].status == 504


# -- Redis killed and restarted during a load run --------------------------------------------


@pytest.mark.redis
async def test_redis_killed_and_restarted_during_load_zero_failed_requests(redis_server, redis_url):
    from prometheus_client import CollectorRegistry

    from router.access.auth import KeyStore
    from router.access.limits import build_limiter, key_limits_from
    from router.access.middleware import middleware
    from router.cache import build_cache
    from router.decisions.log import build_log
    from router.decisions.metrics import Metrics

    s = settings(
        cache={"redis_url": redis_url, "semantic": False},
        decisions={"retry_s": 0.5},
        auth={"keys": [{"key": "sk-load-1", "tenant": "a"}, {"key": "sk-load-2", "tenant": "b"}]},
        limits={"rpm": 100_000, "tpm": 10**9, "breaker": {"failures": 3, "cooldown_s": 5}},
    )
    keys = KeyStore.from_settings(s.auth, env={})
    limiter = build_limiter(s, key_limits_from(keys))
    limiter._retry_redis_s = 0.3  # come back to redis quickly in a short test
    cache, log_ = build_cache(s.cache), build_log(s)
    ups = wrap_all({"fast": FakeUpstream("fast", "fast-model"), "reasoning": reasoner()}, s.models, s.limits.breaker)
    app = create_app(
        s,
        upstreams=ups,
        cache=cache,
        log_sink=log_,
        metrics=Metrics(CollectorRegistry()),
        middleware=middleware(keys, limiter),
    )
    n, done, failures = 600, 0, []
    statuses: dict[int, int] = {}
    gate = asyncio.Semaphore(16)
    phase = {"killed_at": None, "restarted_at": None}

    async def one(i: int, c: httpx.AsyncClient) -> None:
        nonlocal done
        body = {
            "model": "auto",
            "temperature": 0,
            "stream": i % 3 == 0,
            "messages": [{"role": "user", "content": f"q{i % 50}"}],
        }
        async with gate:
            try:
                r = await c.post(
                    "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer sk-load-{1 + i % 2}"}
                )
                ok = r.status_code == 200 and (
                    r.text.rstrip().endswith("data: [DONE]") if body["stream"] else bool(r.json()["choices"])
                )
                if body["stream"] and '"error"' in r.text:
                    ok = False
            except Exception as e:  # noqa: BLE001 - a failed request, whatever the cause
                ok, r = False, None
                failures.append(repr(e))
            statuses[r.status_code if r is not None else -1] = (
                statuses.get(r.status_code if r is not None else -1, 0) + 1
            )
            if not ok and r is not None:
                failures.append(f"{r.status_code}: {r.text[:200]}")
            done += 1
            if done == 150:
                redis_server.kill()
                phase["killed_at"] = done
            if done == 400:
                redis_server.start()
                phase["restarted_at"] = done

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg", timeout=30) as c:
        await asyncio.gather(*(one(i, c) for i in range(n)))
        await asyncio.sleep(0.6)
        # after the restart every part finds redis again
        for i in range(20):
            await one(n + i, c)
        ready = (await c.get("/readyz", headers={"Authorization": "Bearer sk-load-1"})).json()
    await app.state.pipeline.drain()
    print("redis kill/restart:", {"sent": n + 20, "failed": len(failures), "statuses": statuses, **phase})
    assert phase["killed_at"] and phase["restarted_at"]
    assert failures == [], failures[:5]
    assert limiter.redis_errors > 0 and (await limiter.ready())["backend"] == "redis"
    assert "cache" in ready["checks"]
    await limiter.close()
    await cache.close()
    await log_.close()
