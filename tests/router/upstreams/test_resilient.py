import asyncio
import contextlib
import random
import time

import pytest

from router import errors
from router.config import BreakerSettings, DeerSettings, ModelSettings
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeUpstream
from router.upstreams.fake_server import FakeOpenAIServer, Faults
from router.upstreams.openai_compat import OpenAICompatUpstream
from router.upstreams.resilient import BreakerCollector, CircuitBreaker, ResilientUpstream, snapshot, wrap

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi there"}]}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def no_sleep(_: float) -> None:
    return None


def flaky(rate: float, seed: int = 7, error: type[errors.UpstreamError] = errors.UpstreamUnavailable):
    rng = random.Random(seed)

    def handler(body):
        if rng.random() < rate:
            raise error("injected 5xx", upstream="fast")
        return "ok answer"

    return handler


def valid_completion(r: dict) -> bool:
    return r["object"] == "chat.completion" and r["choices"][0]["message"]["content"]


async def collect(agen) -> list[dict]:
    return [c async for c in agen]


# -- retries -------------------------------------------------------------------


async def test_30_percent_5xx_every_call_answers_or_fails_cleanly():
    fake = FakeUpstream("fast", handler=flaky(0.3))
    up = ResilientUpstream(fake, retries=2, timeout=5, sleep=no_sleep)
    ok = failed = 0
    for _ in range(500):
        try:
            assert valid_completion(await up.complete(CHAT, CallContext()))
            ok += 1
        except errors.UpstreamError as e:
            assert e.status in (502, 503, 504) and e.body()["error"]["message"]
            failed += 1
    print(f"complete, 30% 5xx: sent 500, ok {ok}, clean errors {failed}, attempts {up.attempts}")
    assert ok + failed == 500
    assert failed <= 35, failed  # ~0.3**3 = 2.7 % expected after two retries (this seed: 28)
    assert up.breaker.state == "closed" and up.breaker.opened == 0  # independent 5xx do not open it
    assert up.retried > 100


async def test_30_percent_5xx_streams_retry_before_first_chunk():
    fake = FakeUpstream("fast", handler=flaky(0.3, seed=3))
    up = ResilientUpstream(fake, retries=2, timeout=5, sleep=no_sleep)
    ok = failed = 0
    for _ in range(300):
        try:
            chunks = await collect(up.stream(CHAT, CallContext()))
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
            ok += 1
        except errors.UpstreamError:
            failed += 1
    print(f"stream, 30% 5xx: sent 300, ok {ok}, clean errors {failed}")
    assert ok >= 280 and ok + failed == 300


async def test_backoff_is_exponential_with_jitter_and_bounded():
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    s = BreakerSettings(backoff_s=0.1, max_backoff_s=0.3, failures=100)
    up = ResilientUpstream(
        FakeUpstream("x", handler=flaky(1.0)), retries=4, settings=s, sleep=sleep, rng=random.Random(1)
    )
    with pytest.raises(errors.UpstreamUnavailable):
        await up.complete(CHAT, CallContext())
    assert len(waits) == 4
    caps = [0.1, 0.2, 0.3, 0.3]
    assert all(0 <= w <= c for w, c in zip(waits, caps, strict=True))
    assert len(set(waits)) == 4  # jittered


async def test_client_errors_are_not_retried_nor_counted():
    fake = FakeUpstream("x", handler=flaky(1.0, error=errors.UpstreamRejected))
    up = ResilientUpstream(fake, retries=3, sleep=no_sleep)
    for _ in range(10):
        with pytest.raises(errors.UpstreamRejected):
            await up.complete(CHAT, CallContext())
    assert len(fake.calls) == 10 and up.breaker.state == "closed"


async def test_timeout_bounds_each_attempt():
    fake = FakeUpstream("slow", delay=5.0)
    up = ResilientUpstream(fake, retries=1, timeout=0.05, sleep=no_sleep)
    t0 = time.monotonic()
    with pytest.raises(errors.UpstreamTimeout) as e:
        await up.complete(CHAT, CallContext())
    assert time.monotonic() - t0 < 1.0
    assert e.value.status == 504 and up.attempts == 2


async def test_stream_stall_before_first_chunk_is_retried():
    calls = 0

    class StallFirst(FakeUpstream):
        async def stream(self, body, ctx):
            nonlocal calls
            calls += 1
            if calls == 1:
                await asyncio.sleep(10)
            async for c in super().stream(body, ctx):
                yield c

    up = ResilientUpstream(StallFirst("s"), retries=2, timeout=0.05, sleep=no_sleep)
    chunks = await collect(up.stream(CHAT, CallContext()))
    assert calls == 2 and chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_stream_stall_after_first_chunk_is_a_clean_error_not_a_retry():
    fake = FakeUpstream("s", handler=lambda b: "one two three four", chunk_delay=0.0)

    class StallMid(FakeUpstream):
        async def stream(self, body, ctx):
            n = 0
            async with contextlib.aclosing(fake.stream(body, ctx)) as inner:
                async for c in inner:
                    yield c
                    n += 1
                    if n == 2:
                        await asyncio.sleep(10)

    up = ResilientUpstream(StallMid("s"), retries=3, timeout=0.05, sleep=no_sleep)
    got = []
    t0 = time.monotonic()
    with pytest.raises(errors.UpstreamTimeout) as e:
        async for c in up.stream(CHAT, CallContext()):
            got.append(c)
    assert time.monotonic() - t0 < 1.0
    assert len(got) == 2 and "stalled" in e.value.message
    assert len(fake.calls) == 1 and fake.cancelled_streams == 1  # no duplicate output, upstream closed


async def test_closing_the_stream_closes_the_upstream():
    fake = FakeUpstream("s", handler=lambda b: " ".join(["w"] * 50))
    up = ResilientUpstream(fake, sleep=no_sleep)
    agen = up.stream(CHAT, CallContext())
    await agen.__anext__()
    await agen.aclose()
    assert fake.cancelled_streams == 1


# -- circuit breaker ----------------------------------------------------------------


async def test_breaker_opens_rejects_fast_half_opens_and_closes():
    clock = Clock()
    healthy = False

    def handler(body):
        if not healthy:
            raise errors.UpstreamUnavailable("down", upstream="r")
        return "fine"

    fake = FakeUpstream("r", handler=handler)
    s = BreakerSettings(failures=3, cooldown_s=10, max_cooldown_s=40)
    up = ResilientUpstream(fake, retries=0, settings=s, breaker=CircuitBreaker("r", s, clock=clock), sleep=no_sleep)
    for _ in range(3):
        with pytest.raises(errors.UpstreamUnavailable):
            await up.complete(CHAT, CallContext())
    assert up.breaker.state == "open" and len(fake.calls) == 3
    assert (await up.ready())["ok"] is False

    with pytest.raises(errors.UpstreamUnavailable) as e:  # open: refused without calling the upstream
        await up.complete(CHAT, CallContext())
    assert e.value.code == "circuit_open" and len(fake.calls) == 3
    assert e.value.headers["retry-after"] == "10"
    with pytest.raises(errors.UpstreamUnavailable):
        await collect(up.stream(CHAT, CallContext()))
    assert len(fake.calls) == 3

    clock.t += 10  # half-open: one probe goes through, fails, re-opens with a doubled cooldown
    with pytest.raises(errors.UpstreamUnavailable) as e:
        await up.complete(CHAT, CallContext())
    assert e.value.code != "circuit_open" and len(fake.calls) == 4
    assert up.breaker.state == "open"
    clock.t += 10
    assert up.breaker.snapshot()["state"] == "open"  # 20 s now
    clock.t += 10
    healthy = True
    assert valid_completion(await up.complete(CHAT, CallContext()))
    assert up.breaker.state == "closed" and (await up.ready())["ok"] is True
    assert up.breaker.opened == 2


async def test_half_open_admits_a_single_probe():
    clock = Clock()
    b = CircuitBreaker("x", BreakerSettings(failures=1, cooldown_s=1), clock=clock)
    b.failure()
    assert not b.acquire()
    clock.t += 1
    assert b.acquire() and b.state == "half_open"
    assert not b.acquire()  # the probe is in flight
    b.release()  # e.g. the probe was cancelled
    assert b.acquire()
    b.success()
    assert b.state == "closed" and b.acquire() and b.acquire()


def test_breaker_opens_on_failure_rate():
    b = CircuitBreaker("x", BreakerSettings(failures=100, failure_rate=0.5, window=10, min_calls=10), clock=Clock())
    for i in range(10):
        (b.failure if i % 2 else b.success)()
    assert b.state == "open"


async def test_stream_breaker_and_cancelled_probe():
    clock = Clock()
    s = BreakerSettings(failures=1, cooldown_s=1)
    fake = FakeUpstream("x", delay=10)
    up = ResilientUpstream(fake, retries=0, settings=s, breaker=CircuitBreaker("x", s, clock=clock), sleep=no_sleep)
    up.breaker.failure()
    clock.t += 1
    task = asyncio.create_task(collect(up.stream(CHAT, CallContext())))
    await asyncio.sleep(0.01)
    task.cancel()  # the client went away while the probe waited for its first chunk
    with pytest.raises(asyncio.CancelledError):
        await task
    fake.delay = 0
    chunks = await collect(up.stream(CHAT, CallContext()))  # the probe slot was released
    assert chunks and up.breaker.state == "closed"


async def test_wrap_uses_model_settings_and_metrics():
    ms = ModelSettings(provider="fake", retries=1, timeout=7)
    up = wrap(FakeUpstream("fast"), ms)
    assert up.retries == 1 and up.timeout == 7 and up.name == "fast" and up.calls == []
    r = wrap(
        FakeUpstream("reasoning"),
        ModelSettings(provider="fake", timeout=7, reasoning=True, deer=DeerSettings(wall_clock_s=20)),
    )
    assert r.timeout == 27
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    reg.register(BreakerCollector({"fast": up, "reasoning": r}))
    text = generate_latest(reg).decode()
    assert 'thinkgate_upstream_breaker_state{upstream="fast"} 0.0' in text
    assert set(snapshot({"fast": up, "raw": FakeUpstream()})) == {"fast"}


# -- real sockets: a loopback server that resets, fails, hangs and stalls -------------


async def test_real_loopback_faults_complete():
    faults = Faults(fail_rate=0.15, reset_rate=0.15, hang_rate=0.03, seed=11)
    async with FakeOpenAIServer(faults=faults) as server:
        inner = OpenAICompatUpstream("fast", "fake-model", server.api_base, timeout=1.0, connect_timeout=1.0)
        up = ResilientUpstream(inner, retries=2, timeout=1.0, sleep=no_sleep)
        gate = asyncio.Semaphore(16)
        results = await asyncio.gather(*(_one(up, gate) for _ in range(200)))
        await up.close()
    assert server.stats.resets > 10 and server.stats.failed > 10 and server.stats.hangs > 2
    ok = results.count("ok")
    print(f"loopback complete: sent 200, ok {ok}, clean errors {results.count('error')}, server {server.stats}")
    assert ok + results.count("error") == 200, set(results)  # nothing else: no crash, no foreign exception
    assert ok >= 185, ok


async def _one(up, gate) -> str:
    try:
        async with gate:
            r = await up.complete(CHAT, CallContext())
        return "ok" if valid_completion(r) else "invalid"
    except errors.UpstreamError:
        return "error"
    except Exception as e:  # pragma: no cover - would be a bug
        return f"foreign {type(e).__name__}"


async def test_real_loopback_faults_stream():
    faults = Faults(fail_rate=0.1, reset_rate=0.1, stall_rate=0.05, cut_rate=0.05, seed=5)
    async with FakeOpenAIServer(faults=faults) as server:
        inner = OpenAICompatUpstream("fast", "fake-model", server.api_base, timeout=1.0, connect_timeout=1.0)
        up = ResilientUpstream(inner, retries=2, timeout=1.0, sleep=no_sleep)
        gate = asyncio.Semaphore(16)

        async def one() -> str:
            got = []
            try:
                async with gate:
                    async for c in up.stream(CHAT, CallContext()):
                        got.append(c)
            except errors.UpstreamError:
                return "partial" if got else "error"
            except Exception as e:  # pragma: no cover
                return f"foreign {type(e).__name__}"
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in got if c.get("choices"))
            return "ok" if text == " ".join(f"w{i}" for i in range(8)) else "invalid"

        results = await asyncio.gather(*(one() for _ in range(150)))
        await up.close()
    assert server.stats.stalls > 2 and server.stats.cuts > 2 and server.stats.resets > 5
    print(f"loopback stream: sent 150, outcomes { {k: results.count(k) for k in set(results)} }, server {server.stats}")
    assert set(results) <= {"ok", "error", "partial"}, set(results)
    # stalls and cuts after the first chunk end as clean errors (the pipeline turns them into an SSE error event)
    assert results.count("partial") >= server.stats.stalls
    assert results.count("ok") >= 120
