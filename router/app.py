"""create_app(settings, ...) -> Starlette: the HTTP surface. Routes parse, hand
the request to the pipeline, and write JSON or SSE; every failure leaves as an
OpenAI-shaped error body."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.access.auth import caller_of
from router import errors, tracing
from router.access import error_shapes, json_body
from router.api import embeddings, openapi, reasoning_field, request_limits
from router.api.anthropic import routes as anthropic
from router.api.responses import routes as responses_api
from router.api.gemini import routes as gemini_api
from router.api.protocol import DONE, parse_request, sse
from router.cache.stored_responses import MemoryResponseStore
from router.config import Settings
from router.settings.aliases import is_pattern
from router.pipeline.core import Pipeline
from router.pipeline.parts import Reply
from router.types import Endpoint

log = logging.getLogger("thinkgate.app")

_CREDENTIALS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


class BodyLimit:
    """Rejects bodies over `limit` bytes with 413, by Content-Length when given
    and by counting otherwise, before the body is parsed."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s  # the longest wait for the next part of an unfinished body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_error(send, self._error(), scope.get("path", ""))
                    return
        seen = 0
        complete = False

        async def limited() -> Message:
            nonlocal seen, complete
            if complete or self.timeout_s is None:
                msg = await receive()  # after the body: waiting for a disconnect is no attack
            else:
                try:
                    msg = await asyncio.wait_for(receive(), self.timeout_s)
                except TimeoutError:
                    raise errors.InvalidRequest(
                        f"the request body did not arrive within {self.timeout_s:g} s", status=408, code="request_timeout"
                    ) from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                complete = not msg.get("more_body", False)
                if seen > self.limit:
                    raise self._error()
            return msg

        await self.app(scope, limited, send)

    def _error(self) -> errors.PayloadTooLarge:
        return errors.PayloadTooLarge(f"request body is larger than the limit of {self.limit} bytes")


async def _send_error(send: Send, e: errors.ThinkgateError, path: str = "") -> None:
    resp = error_response(e, path)
    await send({"type": "http.response.start", "status": resp.status_code, "headers": resp.raw_headers})
    await send({"type": "http.response.body", "body": resp.body})


def error_response(e: errors.ThinkgateError, path: str = "") -> JSONResponse:
    # the body's shape is the protocol the path speaks (OpenAI; Anthropic on /v1/messages*, Google on /v1beta/*)
    return JSONResponse(error_shapes.body_for(path, e), status_code=e.status, headers=e.headers)


class Gateway:
    """The route handlers, holding the pipeline and the parts /readyz checks."""

    def __init__(self, settings: Settings, pipeline: Pipeline, parts: dict[str, Any]) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.parts = parts  # name -> object with `async ready()`, for /readyz
        self.created = int(time.time())

    async def chat(self, request: Request) -> Response:
        return await self._serve(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, "completion")

    async def _serve(self, request: Request, endpoint: Endpoint) -> Response:
        raw = await request.body()
        state = request.scope.get("state")
        pre = state.get("parsed_body") if isinstance(state, dict) else None
        parsed = pre[1] if pre is not None and pre[0] == raw else None
        t_parse = time.perf_counter()
        with tracing.span("thinkgate.parse", {"thinkgate.endpoint": endpoint}):
            req = parse_request(endpoint, raw, request.headers, parsed)
        req.parse_ms = (time.perf_counter() - t_parse) * 1000  # the decision's first step
        req.caller = caller_of(request.scope)
        request_limits.check(req, self.settings.limits)
        req.headers = {k: v for k, v in request.headers.items() if k not in _CREDENTIALS}  # for rules, conversations
        reply = await self.pipeline.handle(req)
        headers = reply.decision.headers()
        headers.update(reply.extra_headers)
        # runs once the response is sent, so learning's shadow job never delays it
        after = BackgroundTask(reply.after) if reply.after is not None else None
        renamed = reasoning_field.wanted(self.settings, req) != reasoning_field.DEFAULT
        if reply.body is not None:
            body = reasoning_field.rename_body(reply.body) if renamed else reply.body
            return JSONResponse(body, headers=headers, background=after)
        assert reply.chunks is not None
        if renamed:
            reply.chunks = reasoning_field.rename_chunks(reply.chunks)
        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return StreamingResponse(_sse_body(reply), media_type="text/event-stream", headers=headers, background=after)

    async def models(self, request: Request) -> Response:
        caller = caller_of(request.scope)
        seen: dict[str, str] = {}
        for alias in self.settings.routes:
            if not is_pattern(alias):  # `claude-*` serves names; it is not one a client can list
                seen[alias] = "thinkgate"
        for name, ms in self.settings.models.items():
            seen.setdefault(name, "thinkgate")
            if ms.model:
                seen.setdefault(ms.model, ms.provider)
        data = [
            {"id": mid, "object": "model", "created": self.created, "owned_by": owner}
            for mid, owner in seen.items()
            if caller.aliases is None or mid in caller.aliases
        ]
        return JSONResponse({"object": "list", "data": data})

    async def openapi(self, request: Request) -> Response:
        served = [getattr(r, "path", "") for r in request.app.routes]
        return JSONResponse(openapi.document(self.settings, served))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        async def check(name: str, part: Any) -> tuple[str, dict[str, Any]]:
            try:
                with anyio.fail_after(3.0):
                    return name, await part.ready()
            except Exception as e:  # a readiness probe reports failures, it never raises
                return name, {"ok": False, "error": type(e).__name__}

        # any tenant's key may read /readyz: upstream and Redis URLs lose their credentials
        results = _scrub(dict(await asyncio.gather(*(check(n, p) for n, p in self.parts.items()))))
        # Ready while some model can answer: routes fall back to each other, so one
        # model down must not pull every replica out of the load balancer. Cache,
        # log and limits degrade the service but don't stop it.
        ok = any(v.get("ok") for n, v in results.items() if n.startswith("upstream:"))
        degraded = [n for n, v in results.items() if not v.get("ok")]
        return JSONResponse(
            {"status": "ready" if ok else "unavailable", "degraded": degraded, "checks": results},
            status_code=200 if ok else 503,
        )


_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_SECRET_PARAM = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|password|secret)=)[^&\s]*")


def _scrub(value: Any) -> Any:
    """`value` with the user:password of every URL and secret-looking query parameters masked."""
    if isinstance(value, str):
        return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", value))
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


async def _sse_body(reply: Reply) -> AsyncIterator[bytes]:
    assert reply.chunks is not None
    chunks = reply.chunks
    try:
        async for chunk in chunks:
            yield sse(chunk)
        yield DONE
    finally:
        # the client may be gone (task cancelled): still close the upstream side
        with anyio.CancelScope(shield=True):
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()


async def _thinkgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ThinkgateError)
    return error_response(exc, request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: errors.NotFound, 405: errors.InvalidRequest}.get(exc.status_code, errors.InvalidRequest)
    message = {404: f"no route {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}.get(
        exc.status_code, str(exc.detail)
    )
    return error_response(
        kind(message, status=exc.status_code, code="not_found" if exc.status_code == 404 else "method_not_allowed"), request.url.path
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(errors.ThinkgateError("internal error; the gateway logged the details"), request.url.path)


def create_app(
    settings: Settings,
    *,
    upstreams: dict[str, Any],
    embedder: Any = None,
    classifier: Any = None,
    cache: Any = None,
    log_sink: Any = None,
    metrics: Any = None,
    routes: Sequence[BaseRoute] = (),
    middleware: Sequence[Middleware] = (),
    on_close: Sequence[Any] = (),
    extra_ready: dict[str, Any] | None = None,
    learner: Any = None,
    on_start: Sequence[Any] = (),
    response_store: Any = None,
) -> Starlette:
    """Assemble the app from parts built elsewhere (state passed in, nothing global).

    `routes` adds extra endpoints (dashboard, metrics, admin); `middleware` wraps the
    app inside the body limit (auth, rate limits); `on_close` are extra async
    callables run at shutdown after in-flight work drains; `on_start` async callables
    run at start-up and may return an async undo for shutdown (SIGHUP reload);
    `learner` is offered every finished answer (router/learning/shadow.py);
    `response_store` backs the Responses API's store (in-process when None).
    """
    pipeline = Pipeline(
        settings, upstreams, embedder=embedder, classifier=classifier, cache=cache, log_sink=log_sink, metrics=metrics,
        learner=learner,
    )
    parts: dict[str, Any] = {f"upstream:{name}": u for name, u in upstreams.items()}
    if cache is not None and hasattr(cache, "ready"):
        parts["cache"] = cache
    if log_sink is not None and hasattr(log_sink, "ready"):
        parts["decisions"] = log_sink
    if response_store is None:
        rs = settings.responses
        response_store = MemoryResponseStore(ttl_s=rs.ttl_s, max_entries=rs.max_entries)
    parts["responses"] = response_store
    parts.update(extra_ready or {})
    gw = Gateway(settings, pipeline, parts)
    embed_api = embeddings.Embeddings(settings, embedder)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warmup = getattr(embedder, "warmup", None)
        if warmup is not None:
            await warmup()  # the first request should not pay for loading the encoder
        cache_warmup = getattr(getattr(pipeline, "cache", None), "warmup", None)
        # the cache's second look loads MiniLM on its own thread while the gateway already serves
        warming = asyncio.ensure_future(cache_warmup()) if cache_warmup is not None else None
        stops = [await fn() for fn in on_start]  # each may return an async undo, run at shutdown
        yield
        for stop in stops:
            if stop is not None:
                try:
                    await stop()
                except Exception:  # shutdown goes on whatever one undo does
                    log.exception("error in a start-up hook's undo")
        if warming is not None:
            warming.cancel()
        await pipeline.drain()
        await embed_api.close()
        close_embedder = getattr(embedder, "close", None)
        if close_embedder is not None:
            close_embedder()
        for part in [*upstreams.values(), cache, log_sink, response_store]:
            close = getattr(part, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # shutdown goes on whatever one part does
                    log.exception("error while closing %r", part)
        for fn in on_close:
            await fn()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", gw.chat, methods=["POST"]),
            Route("/v1/completions", gw.completions, methods=["POST"]),
            Route("/v1/models", gw.models, methods=["GET"]),
            Route("/healthz", gw.healthz, methods=["GET"]),
            Route("/readyz", gw.readyz, methods=["GET"]),
            *responses_api.routes(settings, pipeline, response_store),
            *anthropic.routes(settings, pipeline),
            *gemini_api.routes(settings, pipeline),
            *embeddings.routes(embed_api),
            Route("/openapi.json", gw.openapi, methods=["GET"]),
            *routes,
        ],
        # JsonGuard innermost: after auth (strangers cost no parsing), before every route,
        # so every front end gets the same strict decoding (router/access/json_body.py)
        middleware=[Middleware(BodyLimit, limit=settings.server.max_body_bytes, timeout_s=settings.server.body_timeout_s), *middleware, Middleware(json_body.JsonGuard)],
        exception_handlers={
            errors.ThinkgateError: _thinkgate_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.pipeline = pipeline
    app.state.settings = settings
    return app
