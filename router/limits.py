"""Per-key rate limits (requests/min, tokens/min) and concurrent-stream slots.

Counters live in Redis when one is configured, so replicas share them: one Lua
script checks and increments a fixed, aligned window atomically. When Redis is
down (or not configured) the same windows are counted in this process, so a
Redis outage degrades the limits to per-replica instead of failing requests;
Redis is retried after a short pause. Stream slots are per process by nature.

`LimitMiddleware` (pure ASGI, inside `router.auth.AuthMiddleware`) applies it to
the completion endpoints; the calls it makes, usable on their own:

    headers = await limiter.check(caller, estimate_tokens(messages, max_tokens))
    ...                                   # raises errors.RateLimited(headers=...) -> 429
    await limiter.settle(caller, estimated, actual_total_tokens)   # correct the estimate
    async with limiter.stream_slot(caller): ...                    # streaming only
"""

from __future__ import annotations

import asyncio
import json
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
        key's own (rpm, tpm) overrides, e.g. from `router.auth.KeyStore`."""
        self.settings = settings
        self.redis = redis
        self._key_limits = key_limits
        self._clock = clock
        self._local = LocalWindows()
        self._script = redis.register_script(_LUA) if redis is not None else None
        self._redis_down_until = 0.0
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


# -- the middleware ---------------------------------------------------------------------

LIMITED_PATHS: tuple[str, ...] = ("/v1/chat/completions", "/v1/completions")
_MAX_PEEK = 1 << 20  # response bytes inspected for `usage` (non-streaming JSON)


class LimitMiddleware:
    """Pure ASGI: applies the Limiter to the completion endpoints, before the app runs.

    It reads the request body once (the outer BodyLimit bounds it) to estimate the
    tokens and see `stream`, replays it to the app, adds the x-ratelimit-* headers to
    the response, holds a stream slot while an SSE response is written, corrects the
    token count from the response's `usage`, and checks per-key allowed controls.
    Must sit inside AuthMiddleware (it reads `scope["state"]["caller"]`).
    """

    def __init__(
        self,
        app: Any,
        limiter: Limiter,
        *,
        controls_for: Callable[[Caller], frozenset[str] | None] | None = None,
        paths: tuple[str, ...] = LIMITED_PATHS,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.controls_for = controls_for
        self.paths = frozenset(paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        from router.auth import send_error

        state = scope.get("state") or {}
        caller = state.get("caller") if isinstance(state, dict) else None
        caller = caller if isinstance(caller, Caller) else Caller()
        try:
            raw = await _read_body(receive)
        except errors.ThinkgateError as e:  # e.g. 413 from the body limit outside
            await send_error(send, e)
            return
        if raw is None:  # the client left before sending its request
            return
        body = _json(raw)
        if isinstance(state, dict) and body is not None:
            state["parsed_body"] = (raw, body)  # the route reuses it instead of parsing again
        est = _estimate(body, raw)
        stream = bool(body.get("stream")) if body else False
        try:
            if self.controls_for is not None:
                _check_controls(self.controls_for(caller), scope, body)
            headers = await self.limiter.check(caller, est)
        except errors.ThinkgateError as e:
            await send_error(send, e)
            return

        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        peek = _UsagePeek() if self.limiter.limits_for(caller)[1] else None

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and headers:
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in headers.items() if k.encode() not in have]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            if peek is not None:
                peek.feed(message)
            await send(message)

        if stream:
            try:
                slot = self.limiter.stream_slot(caller)
                await slot.__aenter__()
            except errors.ThinkgateError as e:
                await send_error(send, e, headers)
                return
            try:
                await self.app(scope, replay, send_with_headers)
            finally:
                await slot.__aexit__(None, None, None)
        else:
            await self.app(scope, replay, send_with_headers)
        if peek is not None and peek.total is not None:
            await self.limiter.settle(caller, est, peek.total)


async def _read_body(receive: Any) -> bytes | None:
    parts: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        if msg["type"] == "http.request":
            parts.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                return b"".join(parts)


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None  # the app answers the 400
    return data if isinstance(data, dict) else None


def _estimate(body: dict[str, Any] | None, raw: bytes) -> int:
    if body is None:
        return math.ceil(len(raw) / 4)
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    mt = mt if isinstance(mt, int) and not isinstance(mt, bool) and 0 < mt < 10**9 else None
    messages = body.get("messages")
    if isinstance(messages, list):
        return estimate_tokens([m for m in messages if isinstance(m, dict)], mt)
    prompt = body.get("prompt")
    return estimate_tokens(prompt if isinstance(prompt, str) else str(prompt or ""), mt)


def _check_controls(allowed: frozenset[str] | None, scope: dict[str, Any], body: dict[str, Any] | None) -> None:
    if allowed is None:
        return
    used = set()
    for name, _ in scope.get("headers") or ():
        n = name.decode("latin-1").lower()
        if n.startswith("x-thinkgate-"):
            used.add(n[len("x-thinkgate-") :])
    extra = body.get("thinkgate") if body else None
    if isinstance(extra, dict):
        used.update(str(k).replace("_", "-") for k in extra)
    refused = sorted(used - allowed)
    if refused:
        raise errors.Forbidden(
            f"this API key may not use the control(s): {', '.join(refused)}", code="control_not_allowed"
        )


class _UsagePeek:
    """Finds `usage.total_tokens` in a JSON response or in an SSE stream's usage event."""

    def __init__(self) -> None:
        self.total: int | None = None
        self._sse = False
        self._ok = False
        self._buf = bytearray()

    def feed(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self._ok = message.get("status") == 200
            ctype = next((v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b"")
            self._sse = ctype.startswith(b"text/event-stream")
            return
        if not self._ok or message["type"] != "http.response.body":
            return
        chunk = message.get("body", b"")
        if self._sse:
            if b'"usage"' in chunk:
                for line in chunk.split(b"\n"):
                    if line.startswith(b"data: {") and b'"usage"' in line:
                        self._take(_json(line[6:]))
            return
        if len(self._buf) + len(chunk) <= _MAX_PEEK:
            self._buf += chunk
            if not message.get("more_body", False):
                self._take(_json(bytes(self._buf)))

    def _take(self, data: dict[str, Any] | None) -> None:
        usage = data.get("usage") if data else None
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            self.total = total


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
        import redis.asyncio as aioredis

        t = settings.limits.redis_timeout_ms / 1000
        client = aioredis.Redis.from_url(url, socket_timeout=t, socket_connect_timeout=t)
    return Limiter(settings.limits, redis=client, key_limits=key_limits)


def key_limits_from(store: Any) -> Callable[[Caller], tuple[int | None, int | None]]:
    """Adapter: a `router.auth.KeyStore` -> the per-key (rpm, tpm) lookup the Limiter takes."""

    def lookup(caller: Caller) -> tuple[int | None, int | None]:
        e = store.entry(caller.key_id)
        return (e.rpm, e.tpm) if e is not None else (None, None)

    return lookup


def middleware(keys: Any, limiter: Limiter) -> list[Any]:
    """The request guards for `create_app(middleware=...)`: auth outside, limits inside
    (limits read the caller that auth sets). `keys` is a `router.auth.KeyStore`."""
    from starlette.middleware import Middleware

    from router.auth import AuthMiddleware

    return [
        Middleware(AuthMiddleware, keys=keys),
        Middleware(LimitMiddleware, limiter=limiter, controls_for=keys.allowed_controls),
    ]
