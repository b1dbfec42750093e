"""Per-key rate limits (requests/min, tokens/min) and concurrent-stream slots.

Counters live in Redis when one is configured, so replicas share them: one Lua
script checks and increments a fixed, aligned window atomically. When Redis is
down (or not configured) the same windows are counted in this process, so a
Redis outage degrades the limits to per-replica instead of failing requests;
Redis is retried after a short pause. Stream slots are per process by nature.

`router.access.middleware.LimitMiddleware` (pure ASGI, inside
`router.access.auth.AuthMiddleware`) applies it to the completion endpoints; the calls
it makes, usable on their own:

    headers = await limiter.check(caller, estimate_tokens(messages, max_tokens))
    ...                                   # raises errors.RateLimited(headers=...) -> 429
    await limiter.settle(caller, estimated, actual_total_tokens)   # correct the estimate
    async with limiter.stream_slot(caller): ...                    # streaming only
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from router import errors
from router.config import LimitSettings, Settings
from router.types import Caller

log = logging.getLogger("thinkgate.limits")

# KEYS: requests counter, tokens counter. ARGV: rpm (0 = none), tpm (0 = none), estimated tokens, ttl seconds.
# Returns {allowed, requests used, tokens used}. A request that alone exceeds tpm passes on an empty
# window, so a large prompt is slow, never refused forever.
_LUA = """
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local est = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
if rpm > 0 and r >= rpm then return {0, r, t} end
if tpm > 0 and (t >= tpm or (t > 0 and t + est > tpm)) then return {0, r, t} end
r = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ttl)
if est > 0 then
  t = redis.call('INCRBY', KEYS[2], est)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {1, r, t}
"""


def estimate_tokens(messages: list[dict[str, Any]] | str | None, max_tokens: int | None = None) -> int:
    """A cheap upper-ish estimate (~4 characters a token) of a request's token cost."""
    if isinstance(messages, str):
        chars = len(messages)
    else:
        chars = 0
        for m in messages or ():
            c = m.get("content") if isinstance(m, dict) else None
            if isinstance(c, str):
                chars += len(c)
            elif isinstance(c, list):
                chars += sum(len(str(p.get("text", ""))) for p in c if isinstance(p, dict))
            chars += 16  # role and framing
    return math.ceil(chars / 4) + (max_tokens or 0)


@dataclass(frozen=True)
class Usage:
    allowed: bool
    requests: int
    tokens: int


class LocalWindows:
    """The same fixed windows, counted in this process."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._counts: dict[str, tuple[int, int, int]] = {}  # bucket -> (window index, requests, tokens)
        self._max_keys = max_keys

    def hit(self, bucket: str, window: int, rpm: int, tpm: int, est: int) -> Usage:
        w, r, t = self._counts.get(bucket, (window, 0, 0))
        if w != window:
            r, t = 0, 0
        if (rpm and r >= rpm) or (tpm and (t >= tpm or (t > 0 and t + est > tpm))):
            return Usage(False, r, t)
        if len(self._counts) >= self._max_keys and bucket not in self._counts:
            self._evict(window)
        r, t = r + 1, t + est
        self._counts[bucket] = (window, r, t)
        return Usage(True, r, t)

    def add_tokens(self, bucket: str, window: int, delta: int) -> None:
        w, r, t = self._counts.get(bucket, (window, 0, 0))
        if w == window:
            self._counts[bucket] = (w, r, max(0, t + delta))

    def _evict(self, window: int) -> None:
        stale = [b for b, (w, _, _) in self._counts.items() if w != window]
        for b in stale:
            del self._counts[b]
        if len(self._counts) >= self._max_keys:  # all current: drop the oldest inserted
            for b in list(self._counts)[: len(self._counts) // 10 or 1]:
                del self._counts[b]


class Limiter:
    def __init__(
        self,
        settings: LimitSettings,
        *,
        redis: Any | None = None,
        key_limits: Callable[[Caller], tuple[int | None, int | None]] | None = None,
        clock: Callable[[], float] = time.time,
        retry_redis_s: float = 1.0,
    ) -> None:
        """`redis`: a `redis.asyncio.Redis` client (or None). `key_limits(caller)` returns a
        key's own (rpm, tpm) overrides, e.g. from `router.access.auth.KeyStore`."""
        self.settings = settings
        self.redis = redis
        self._key_limits = key_limits
        self._clock = clock
        self._local = LocalWindows()
        self._script = redis.register_script(_LUA) if redis is not None else None
        self._redis_down_until = 0.0
        self._warm = False  # connection opened and script loaded (by the first readiness check)
        self._retry_redis_s = retry_redis_s
        self.redis_errors = 0
        self.streams = 0
        self._streams_by_key: dict[str, int] = {}

    # -- requests and tokens per window -------------------------------------

    def limits_for(self, caller: Caller) -> tuple[int | None, int | None]:
        rpm, tpm = self.settings.rpm, self.settings.tpm
        if self._key_limits is not None:
            k_rpm, k_tpm = self._key_limits(caller)
            rpm = k_rpm if k_rpm is not None else rpm
            tpm = k_tpm if k_tpm is not None else tpm
        return rpm, tpm

    @staticmethod
    def bucket(caller: Caller) -> str:
        return f"key:{caller.key_id}" if caller.key_id else f"tenant:{caller.tenant}"

    def _redis_ok(self, now: float) -> bool:
        return self._script is not None and now >= self._redis_down_until

    async def _hit(self, bucket: str, window: int, rpm: int, tpm: int, est: int, now: float) -> Usage:
        if self._redis_ok(now):
            assert self._script is not None
            base = f"{self.settings.namespace}:rl:{{{bucket}:{window}}}"
            try:
                async with asyncio.timeout(self.settings.redis_timeout_ms / 1000):
                    allowed, r, t = await self._script(
                        keys=[base + ":r", base + ":t"], args=[rpm, tpm, est, self.settings.window_s * 2]
                    )
                if self._redis_down_until:
                    log.info("limits: redis is back; counting in redis again")
                    self._redis_down_until = 0.0
                return Usage(bool(allowed), int(r), int(t))
            except Exception as e:  # redis down/slow: count locally, never fail the request
                self._mark_down(e, now)
        return self._local.hit(bucket, window, rpm, tpm, est)

    def _mark_down(self, e: BaseException, now: float) -> None:
        self.redis_errors += 1
        if not self._redis_down_until:
            log.warning("limits: redis unavailable (%s); counting per process", type(e).__name__)
        self._redis_down_until = now + self._retry_redis_s

    async def check(self, caller: Caller, estimated_tokens: int = 0) -> dict[str, str]:
        """Count one request of about `estimated_tokens`; return x-ratelimit-* headers,
        or raise `errors.RateLimited` (429, with retry-after) when over a limit."""
        rpm, tpm = self.limits_for(caller)
        if not rpm and not tpm:
            return {}
        now = self._clock()
        size = self.settings.window_s
        window = int(now // size)
        reset = max(0.001, (window + 1) * size - now)
        est = max(0, int(estimated_tokens))
        usage = await self._hit(self.bucket(caller), window, rpm or 0, tpm or 0, est, now)
        headers: dict[str, str] = {}
        reset_s = _duration(reset)
        if rpm:
            headers["x-ratelimit-limit-requests"] = str(rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, rpm - usage.requests))
            headers["x-ratelimit-reset-requests"] = reset_s
        if tpm:
            headers["x-ratelimit-limit-tokens"] = str(tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, tpm - usage.tokens))
            headers["x-ratelimit-reset-tokens"] = reset_s
        if not usage.allowed:
            headers["retry-after"] = str(max(1, math.ceil(reset)))
            headers["retry-after-ms"] = str(max(1, math.ceil(reset * 1000)))
            what = "requests" if rpm and usage.requests >= rpm else "tokens"
            limit = rpm if what == "requests" else tpm
            raise errors.RateLimited(
                f"rate limit reached: {limit} {what} per {size}s for this API key; retry after {headers['retry-after']}s",
                headers=headers,
            )
        return headers

    async def settle(self, caller: Caller, estimated_tokens: int, actual_tokens: int) -> None:
        """Correct the window's token count once the real usage is known."""
        _, tpm = self.limits_for(caller)
        delta = int(actual_tokens) - int(estimated_tokens)
        if not tpm or delta == 0:
            return
        now = self._clock()
        window = int(now // self.settings.window_s)
        bucket = self.bucket(caller)
        if self._redis_ok(now):
            key = f"{self.settings.namespace}:rl:{{{bucket}:{window}}}:t"
            try:
                async with asyncio.timeout(self.settings.redis_timeout_ms / 1000):
                    await self.redis.incrby(key, delta)  # type: ignore[union-attr]
                return
            except Exception as e:  # as in _hit
                self._mark_down(e, now)
        self._local.add_tokens(bucket, window, delta)

    # -- concurrent streams --------------------------------------------------

    @asynccontextmanager
    async def stream_slot(self, caller: Caller) -> AsyncIterator[None]:
        """Hold one of the process's stream slots (and the key's) for a stream's lifetime."""
        bucket = self.bucket(caller)
        per_key = self.settings.max_streams_per_key
        if per_key is None and caller.key_id is not None:
            # one key holding every slot (slow streams left unread) would refuse every other
            # key: a key gets at most `stream_share` of them, the rest stay for the others
            per_key = max(1, int(self.settings.max_concurrent_streams * self.settings.stream_share))
        mine = self._streams_by_key.get(bucket, 0)
        if self.streams >= self.settings.max_concurrent_streams or (per_key and mine >= per_key):
            limit = per_key if per_key and mine >= per_key else self.settings.max_concurrent_streams
            raise errors.RateLimited(
                f"too many concurrent streams ({limit}); retry shortly",
                code="too_many_streams",
                headers={"retry-after": "1"},
            )
        self.streams += 1
        self._streams_by_key[bucket] = mine + 1
        try:
            yield
        finally:
            self.streams -= 1
            left = self._streams_by_key.get(bucket, 1) - 1
            if left > 0:
                self._streams_by_key[bucket] = left
            else:
                self._streams_by_key.pop(bucket, None)

    # -- lifecycle ------------------------------------------------------------

    async def ready(self) -> dict[str, Any]:
        """Limits never make the gateway unready: a Redis outage means per-process counting."""
        if self._script is not None and not self._warm:
            # Before a load balancer sends traffic (it waits for /readyz): open a
            # connection and load the script, so the first counted request is not
            # the one that pays connect + NOSCRIPT inside redis_timeout_ms and
            # falls back to per-process counting (measured: +1 per cold replica).
            try:
                async with asyncio.timeout(1.0):
                    await self.redis.script_load(_LUA)  # type: ignore[union-attr]
                self._warm = True
            except Exception:  # down now: counted per process until it is back
                pass
        backend = "redis" if self._script is not None else "local"
        if backend == "redis" and not self._redis_ok(self._clock()):
            backend = "local (redis down)"
        return {"ok": True, "backend": backend, "redis_errors": self.redis_errors, "streams": self.streams}

    async def close(self) -> None:
        if self.redis is not None:
            try:
                await self.redis.aclose()
            except Exception:  # closing a dead connection must not break shutdown
                pass


def _duration(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `250ms`."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    s = math.ceil(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def build_limiter(
    settings: Settings, key_limits: Callable[[Caller], tuple[int | None, int | None]] | None = None
) -> Limiter:
    """Redis from `limits.redis_url`, else the cache's; neither: per-process counters."""
    url = settings.limits.redis_url or settings.cache.redis_url
    client = None
    if url:
        from router.cache.redis_client import connect  # plain or redis+sentinel:// URLs

        t = settings.limits.redis_timeout_ms / 1000
        client = connect(url, socket_timeout=t, socket_connect_timeout=t)
    return Limiter(settings.limits, redis=client, key_limits=key_limits)


def key_limits_from(store: Any) -> Callable[[Caller], tuple[int | None, int | None]]:
    """Adapter: a `router.access.auth.KeyStore` -> the per-key (rpm, tpm) lookup the Limiter takes."""

    def lookup(caller: Caller) -> tuple[int | None, int | None]:
        e = store.entry(caller.key_id)
        return (e.rpm, e.tpm) if e is not None else (None, None)

    return lookup
