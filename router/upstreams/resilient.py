"""Retries and a circuit breaker around any upstream, as a wrapper (not flags).

- `complete()`: each attempt is bounded by the model's timeout; a retryable
  `UpstreamError` is retried with exponential backoff and full jitter, up to
  `ModelSettings.retries` times.
- `stream()`: retried the same way only until the first chunk has been yielded
  (after that the client has output and a retry would duplicate it); the wait
  for the first chunk and between chunks is bounded by the model's timeout, so a
  stalled stream ends in `UpstreamTimeout` instead of hanging.
- The breaker counts calls (after their retries): `failures` consecutive failed
  calls, or a failed share >= `failure_rate` of the last `window` calls, opens it.
  While open every call raises `UpstreamUnavailable` at once, so the pipeline
  falls back to the other route without waiting. After `cooldown_s` one probe
  call is let through (half-open): success closes it, failure re-opens it with
  a doubled cooldown. Client errors (`UpstreamRejected`) are not upstream faults.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal

from router import errors
from router.config import BreakerSettings, ModelSettings
from router.upstreams.base import CallContext, Upstream

log = logging.getLogger("thinkgate.resilience")
calls_log = logging.getLogger("thinkgate.upstream")  # one INFO line per upstream call, any client library


def log_call(name: str, model: str, kind: str, t0: float, attempts: int, usage: Any = None, err: BaseException | None = None) -> None:
    """The one line every upstream call leaves: target, status, tokens, duration."""
    ms = (time.perf_counter() - t0) * 1000
    usage = usage if isinstance(usage, dict) else {}
    tokens = f"{usage.get('prompt_tokens', '?')}+{usage.get('completion_tokens', '?')}"
    tries = "" if attempts <= 1 else f", {attempts} attempts"
    if err is None:
        calls_log.info("upstream %s (%s) %s: 200, tokens %s, %.0f ms%s", name, model, kind, tokens, ms, tries)
    elif isinstance(err, errors.ThinkgateError):
        calls_log.info("upstream %s (%s) %s: %d %s, %.0f ms%s", name, model, kind, err.status, err.code, ms, tries)
    else:  # cancelled: the client left, or a bound elsewhere ended it
        calls_log.info("upstream %s (%s) %s: cancelled (%s), %.0f ms%s", name, model, kind, type(err).__name__, ms, tries)

State = Literal["closed", "open", "half_open"]
STATE_VALUE: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}


def is_fault(exc: BaseException) -> bool:
    """Does this failure say something about the upstream's health?"""
    if isinstance(exc, errors.UpstreamRejected):
        return False
    return isinstance(exc, errors.UpstreamError) and (exc.retryable or isinstance(exc, errors.UpstreamAuth))


class CircuitBreaker:
    def __init__(
        self, name: str, settings: BreakerSettings | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.s = settings or BreakerSettings()
        self._clock = clock
        self.state: State = "closed"
        self._recent: deque[bool] = deque(maxlen=self.s.window)  # True = failed
        self._consecutive = 0
        self._opened_at = 0.0
        self._cooldown = self.s.cooldown_s
        self._probe_in_flight = False
        self.opened = 0  # times it opened
        self.rejected = 0  # calls refused while open

    def _current(self) -> State:
        if self.state == "open" and self._clock() - self._opened_at >= self._cooldown:
            self.state = "half_open"
            self._probe_in_flight = False
            log.info("breaker %s: half-open, letting one probe through", self.name)
        return self.state

    def acquire(self) -> bool:
        """May a call go through now? A True in half-open state makes the caller the probe."""
        state = self._current()
        if state == "closed":
            return True
        if state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        self.rejected += 1
        return False

    def retry_after(self) -> float:
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def success(self) -> None:
        self._consecutive = 0
        self._recent.append(False)
        if self._current() == "open":
            return  # a call that began before the breaker opened; only a probe may close it
        if self.state == "half_open":
            log.info("breaker %s: closed (probe succeeded)", self.name)
            self.state = "closed"
            self._cooldown = self.s.cooldown_s
            self._recent.clear()
        self._probe_in_flight = False

    def failure(self) -> None:
        self._consecutive += 1
        self._recent.append(True)
        if self.state == "half_open":
            self._cooldown = min(self._cooldown * 2, self.s.max_cooldown_s)
            self._open("probe failed")
            return
        if self.state == "closed":
            failed = sum(self._recent)
            if self._consecutive >= self.s.failures:
                self._open(f"{self._consecutive} consecutive failures")
            elif len(self._recent) >= self.s.min_calls and failed / len(self._recent) >= self.s.failure_rate:
                self._open(f"{failed}/{len(self._recent)} recent calls failed")

    def release(self) -> None:
        """The call ended without a verdict (cancelled, or a client error): free the probe slot."""
        self._probe_in_flight = False

    def _open(self, why: str) -> None:
        self.state = "open"
        self._opened_at = self._clock()
        self._probe_in_flight = False
        self.opened += 1
        log.warning("breaker %s: open for %.1fs (%s)", self.name, self._cooldown, why)

    def snapshot(self) -> dict[str, Any]:
        state = self._current()
        recent = list(self._recent)
        return {
            "state": state,
            "consecutive_failures": self._consecutive,
            "recent_failure_rate": round(sum(recent) / len(recent), 3) if recent else 0.0,
            "opened": self.opened,
            "rejected": self.rejected,
            "retry_after_s": round(self.retry_after(), 3) if state == "open" else 0.0,
        }


class ResilientUpstream:
    """Implements the Upstream protocol around `inner`."""

    def __init__(
        self,
        inner: Upstream,
        *,
        retries: int = 2,
        timeout: float | None = 60.0,
        breaker: CircuitBreaker | None = None,
        settings: BreakerSettings | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.retries = retries
        self.timeout = timeout
        self.settings = settings or BreakerSettings()
        self.breaker = breaker or CircuitBreaker(inner.name, self.settings)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.attempts = 0
        self.retried = 0
        self.failures = 0

    def __getattr__(self, item: str) -> Any:
        # anything else (e.g. a DEER upstream's extras, FakeUpstream.calls) is the inner upstream's
        return getattr(self.inner, item)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.settings.max_backoff_s, self.settings.backoff_s * (2**attempt))
        return self._rng.uniform(0, cap)

    def _refuse(self) -> errors.UpstreamUnavailable:
        wait = self.breaker.retry_after()
        return errors.UpstreamUnavailable(
            f"upstream {self.name} is unavailable (circuit open, retry in {wait:.0f}s)",
            upstream=self.name,
            code="circuit_open",
            headers={"retry-after": str(max(1, round(wait)))},
        )

    def _timeout(self, ctx: CallContext) -> float | None:
        return ctx.timeout or self.timeout

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        t0, n0 = time.perf_counter(), self.attempts
        try:
            result = await self._complete(body, ctx)
        except BaseException as e:
            log_call(self.name, self.model, "complete", t0, self.attempts - n0, err=e)
            raise
        log_call(self.name, self.model, "complete", t0, self.attempts - n0, usage=result.get("usage"))
        return result

    async def _complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        attempt = 0
        while True:
            if not self.breaker.acquire():
                raise self._refuse()
            self.attempts += 1
            try:
                async with asyncio.timeout(self._timeout(ctx)):
                    result = await self.inner.complete(body, ctx)
            except TimeoutError:
                err: errors.ThinkgateError = errors.UpstreamTimeout(
                    f"upstream {self.name} timed out", upstream=self.name
                )
            except errors.ThinkgateError as e:
                err = e
            except BaseException:
                self.breaker.release()
                raise
            else:
                self.breaker.success()
                return result
            if not await self._after_failure(err, attempt):
                raise err
            attempt += 1

    async def _after_failure(self, err: errors.ThinkgateError, attempt: int) -> bool:
        """Record the failure; True when the call should be retried (after the backoff)."""
        retry = err.retryable and attempt < self.retries
        if not is_fault(err):
            self.breaker.release()
            return False
        self.failures += 1
        if retry and self.breaker.state == "closed":
            # the breaker judges calls, not attempts: only the final failure counts
            self.retried += 1
            # said at INFO: a retried timeout is where a slow request's minutes go (the first
            # request on the embedded default spent 2 x 120 s in attempts that timed out)
            calls_log.info("upstream %s: attempt %d failed (%d %s: %s); retrying", self.name, attempt + 1, err.status, err.code,
                           getattr(err, "message", ""))
            await self._sleep(self._backoff(attempt))
            return True
        self.breaker.failure()
        return False

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        t0, n0 = time.perf_counter(), self.attempts
        usage: Any = None
        agen = self._stream(body, ctx)
        try:
            async for chunk in agen:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                yield chunk
        except BaseException as e:
            log_call(self.name, self.model, "stream", t0, self.attempts - n0, err=e)
            raise
        finally:
            await _aclose(agen)
        log_call(self.name, self.model, "stream", t0, self.attempts - n0, usage=usage)

    async def _stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        attempt = 0
        while True:
            if not self.breaker.acquire():
                raise self._refuse()
            self.attempts += 1
            agen = self.inner.stream(body, ctx).__aiter__()
            started = False
            try:
                while True:
                    try:
                        async with asyncio.timeout(self._timeout(ctx)):
                            chunk = await agen.__anext__()
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise errors.UpstreamTimeout(
                            f"upstream {self.name} {'stalled mid-stream' if started else 'timed out before the first token'}",
                            upstream=self.name,
                        ) from None
                    if not started:
                        started = True
                        self.breaker.success()  # it answered; a later stall is reported, not retried
                    yield chunk
            except errors.ThinkgateError as err:
                if started:
                    if is_fault(err):
                        self.failures += 1
                    raise
                if not await self._after_failure(err, attempt):
                    raise
                attempt += 1
                continue
            except BaseException:
                if not started:
                    self.breaker.release()
                raise
            finally:
                await _aclose(agen)
            if not started:
                self.breaker.success()  # an empty but clean stream
            return

    async def ready(self) -> dict[str, Any]:
        snap = self.breaker.snapshot()
        try:
            info = dict(await self.inner.ready())
        except Exception as e:  # readiness must report, not raise
            info = {"ok": False, "error": type(e).__name__}
        info["breaker"] = snap["state"]
        if snap["state"] == "open":
            info["ok"] = False
        return info

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.breaker.snapshot(),
            "attempts": self.attempts,
            "retries": self.retried,
            "failures": self.failures,
        }

    async def close(self) -> None:
        await self.inner.close()


async def _aclose(agen: Any) -> None:
    close = getattr(agen, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # a broken upstream generator must not mask the real outcome
            pass


def wrap(upstream: Upstream, ms: ModelSettings, settings: BreakerSettings | None = None) -> ResilientUpstream:
    """The upstream as the pipeline should see it. A reasoning (DEER) model's call spans
    several upstream requests, so its whole-call bound adds the DEER wall clock."""
    timeout = ms.timeout
    if ms.reasoning and ms.deer is not None and ms.deer.enabled:
        timeout += ms.deer.wall_clock_s
    return ResilientUpstream(upstream, retries=retries_for(ms), timeout=timeout, settings=settings)


def retries_for(ms: ModelSettings) -> int:
    """A local llama.cpp server answers one request at a time and finishes a non-streamed
    one even after its client gave up (llama-cpp-python runs it in a thread holding the
    model's lock): a retry after a timeout queues behind the abandoned attempt. The
    embedded default's first request spent 2 x 120 s that way (3 attempts, 274 s for a
    15-token answer), so such a model is not retried unless `retries` is set explicitly."""
    if ms.provider == "llamacpp" and "retries" not in ms.model_fields_set:
        return 0
    return ms.retries


def wrap_all(
    upstreams: dict[str, Upstream], models: dict[str, ModelSettings], settings: BreakerSettings | None = None
) -> dict[str, Upstream]:
    return {name: wrap(u, models[name], settings) if name in models else u for name, u in upstreams.items()}


def snapshot(upstreams: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Breaker state per wrapped upstream, for /readyz and metrics."""
    return {name: u.snapshot() for name, u in upstreams.items() if isinstance(u, ResilientUpstream)}


class BreakerCollector:
    """A prometheus_client collector: register with `registry.register(BreakerCollector(upstreams))`."""

    def __init__(self, upstreams: dict[str, Any]) -> None:
        self.upstreams = upstreams

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = GaugeMetricFamily(
            "thinkgate_upstream_breaker_state", "circuit breaker: 0 closed, 1 half-open, 2 open", labels=["upstream"]
        )
        opened = CounterMetricFamily(
            "thinkgate_upstream_breaker_opened", "times the breaker opened", labels=["upstream"]
        )
        retries = CounterMetricFamily("thinkgate_upstream_retries", "upstream attempts retried", labels=["upstream"])
        failures = CounterMetricFamily("thinkgate_upstream_failures", "failed upstream attempts", labels=["upstream"])
        for name, snap in snapshot(self.upstreams).items():
            state.add_metric([name], STATE_VALUE[snap["state"]])
            opened.add_metric([name], snap["opened"])
            retries.add_metric([name], snap["retries"])
            failures.add_metric([name], snap["failures"])
        return [state, opened, retries, failures]
