"""The ASGI side of the rate limits: `LimitMiddleware` applies a
`router.access.limits.Limiter` to the completion endpoints, and `middleware()` builds
the request guards (auth, then limits) for `create_app(middleware=...)`.

Kept apart from the Limiter because this half is about ASGI messages: reading
and replaying the request body, estimating its tokens, adding headers to the
response and peeking at its `usage`; the Limiter itself only counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from router import errors
from router.access import error_shapes
from router.access import json_body
from router.access.limits import Limiter, estimate_tokens
from router.types import Caller, Meter

LIMITED_PATHS: tuple[str, ...] = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages", "/v1/embeddings")
# Gemini's generate calls name the model in the path: /v1beta/models/{model}:generateContent
_GEMINI_CALLS = ("generateContent", "streamGenerateContent")
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
        path = scope.get("path") or ""
        gemini = error_shapes.gemini_call(path) in _GEMINI_CALLS
        if scope["type"] != "http" or scope.get("method") != "POST" or (path not in self.paths and not gemini):
            await self.app(scope, receive, send)
            return
        from router.access.auth import send_error

        state = scope.get("state") or {}
        caller = state.get("caller") if isinstance(state, dict) else None
        caller = caller if isinstance(caller, Caller) else Caller()
        try:
            raw = await _read_body(receive)
        except errors.ThinkgateError as e:  # e.g. 413 from the body limit outside
            await send_error(send, e, path=scope["path"])
            return
        if raw is None:  # the client left before sending its request
            return
        try:
            decoded = json_body.decode(raw)
        except errors.ThinkgateError:
            decoded = None  # JsonGuard inside answers the 400
        else:
            json_body.remember(state, raw, decoded)  # the route reuses it instead of parsing again
        body = decoded if isinstance(decoded, dict) else None
        est = _estimate(body, raw)
        stream = bool(body.get("stream")) if body else False
        stream = stream or path.endswith(":streamGenerateContent")
        try:
            if self.controls_for is not None:
                _check_controls(self.controls_for(caller), scope, body)
            headers = await self.limiter.check(caller, est)
        except errors.ThinkgateError as e:
            await send_error(send, e, path=scope["path"])
            return

        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        peek = _UsagePeek() if self.limiter.limits_for(caller)[1] else None
        if peek is not None and isinstance(state, dict):
            # the pipeline's own token counts, whether or not the client asked for usage
            caller = replace(caller, meter=Meter())
            state["caller"] = caller

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
                await send_error(send, e, headers, path=scope["path"])
                return
            try:
                await self.app(scope, replay, send_with_headers)
            finally:
                await slot.__aexit__(None, None, None)
        else:
            await self.app(scope, replay, send_with_headers)
        if peek is not None:
            counted = caller.meter.tokens() if caller.meter is not None else None
            actual = counted if counted is not None else peek.total  # /v1/embeddings: its usage
            if actual is not None:
                await self.limiter.settle(caller, est, actual)


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
    mt = body.get("max_completion_tokens", body.get("max_tokens", body.get("max_output_tokens")))
    gen = body.get("generationConfig")
    if mt is None and isinstance(gen, dict):  # Gemini
        mt = gen.get("maxOutputTokens")
    mt = mt if isinstance(mt, int) and not isinstance(mt, bool) and 0 < mt < 10**9 else None
    if isinstance(body.get("contents"), list):  # Gemini's contents: parts nest below, count the bytes
        return math.ceil(len(raw) / 4) + (mt or 0)
    messages = body.get("messages", body.get("input"))  # chat messages, or the Responses API's input items
    if isinstance(messages, list):
        return estimate_tokens([m for m in messages if isinstance(m, dict)], mt)
    prompt = body.get("prompt", body.get("input"))  # completions' prompt, or the Responses API's input
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
            if b'"usage"' in chunk or b'"usageMetadata"' in chunk:  # OpenAI's, or Gemini's last event
                for line in chunk.split(b"\n"):
                    if line.startswith(b"data: {") and (b'"usage"' in line or b'"usageMetadata"' in line):
                        self._take(_json(line[6:]))
            return
        if len(self._buf) + len(chunk) <= _MAX_PEEK:
            self._buf += chunk
            if not message.get("more_body", False):
                self._take(_json(bytes(self._buf)))

    def _take(self, data: dict[str, Any] | None) -> None:
        usage = data.get("usage") if data else None
        if usage is None and data and isinstance(data.get("response"), dict):
            usage = data["response"].get("usage")  # the Responses API's final event
        if usage is None and data and isinstance(data.get("usageMetadata"), dict):  # Gemini's
            usage = {"total_tokens": data["usageMetadata"].get("totalTokenCount")}
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        if total is None and isinstance(usage, dict):  # Anthropic's usage has no total
            parts = [usage.get("input_tokens"), usage.get("output_tokens")]
            if all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
                total = sum(parts)  # type: ignore[arg-type]
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            self.total = total


def middleware(keys: Any, limiter: Limiter) -> list[Any]:
    """The request guards for `create_app(middleware=...)`: auth outside, limits inside
    (limits read the caller that auth sets). `keys` is a `router.access.auth.KeyStore`."""
    from starlette.middleware import Middleware

    from router.access.auth import AuthMiddleware

    return [
        Middleware(AuthMiddleware, keys=keys),
        Middleware(LimitMiddleware, limiter=limiter, controls_for=keys.allowed_controls),
    ]
