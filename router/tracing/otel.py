"""Tracing on the OpenTelemetry SDK (imported only when tracing is on).

- One trace per `/v1/*` request: a SERVER span continued from the incoming
  `traceparent`, carrying thinkgate's decision (route, difficulty, escalated,
  cache, DEER exit) and GenAI usage once the decision is final.
- Child spans from the hooks (parse, cache, embed, classify, Self-Ref
  escalation, DEER probes) and one CLIENT span per upstream call with the GenAI
  semantic-convention attributes; its context goes to the upstream as
  `traceparent`.
- Export through a BatchSpanProcessor: spans queue (bounded, dropped when full)
  and leave on a background thread, so a slow or dead collector never delays
  or fails a request.

Settings are the standard variables: OTEL_TRACES_EXPORTER (otlp | console |
none), OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL
(http/protobuf; grpc when its exporter package is installed), OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES; the SDK itself reads the rest (OTEL_TRACES_SAMPLER,
OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS / _TIMEOUT / _COMPRESSION).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router import tracing
from router.config import ModelSettings
from router.upstreams.base import CallContext, Upstream

log = logging.getLogger("thinkgate.tracing")

TRACED_PATHS = ("/v1/",)  # probes, dashboard and metrics polls would drown the requests


def _value(v: Any) -> Any:
    if isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, (list, tuple)):
        return [x if isinstance(x, (str, bool, int, float)) else str(x) for x in v]
    return str(v)


def _attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _value(v) for k, v in attrs.items() if v is not None}


def _exporter(env: Mapping[str, str]) -> list[SpanExporter]:
    names = [n.strip().lower() for n in (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",") if n.strip()]
    out: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            out.append(ConsoleSpanExporter())
        elif name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
            ).lower()
            endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

                out.append(GrpcExporter(endpoint=endpoint or base))
            elif protocol == "http/protobuf":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                if endpoint is None and base:
                    endpoint = base.rstrip("/") + "/v1/traces"  # the spec's per-signal path
                out.append(OTLPSpanExporter(endpoint=endpoint))
            else:
                raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use http/protobuf or grpc")
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: thinkgate exports with otlp, console or none")
    return out


def _resource(env: Mapping[str, str]) -> Resource:
    attrs: dict[str, Any] = {}
    for pair in (env.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        k, sep, v = pair.partition("=")
        if sep and k.strip():
            attrs[k.strip()] = v.strip()
    attrs["service.name"] = env.get("OTEL_SERVICE_NAME") or attrs.get("service.name") or "thinkgate"
    return Resource.create(attrs)


class Tracing:
    """The process's tracer provider and exporters; builds per-request tracers."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("thinkgate")
        self.propagator = get_global_textmap()  # OTEL_PROPAGATORS; W3C tracecontext + baggage by default

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tracing:
        provider = TracerProvider(resource=_resource(env))
        for exporter in _exporter(env):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    # -- assembly -------------------------------------------------------------------

    def middleware(self) -> Middleware:
        return Middleware(TracingMiddleware, tracing=self)

    def wrap(self, upstreams: dict[str, Upstream], models: Mapping[str, ModelSettings]) -> dict[str, Upstream]:
        return {name: TracedUpstream(u, models[name]) for name, u in upstreams.items()}

    async def close(self, timeout_s: float = 5.0) -> None:
        # flush what is queued, bounded: a dead collector must not hold up shutdown
        try:
            await asyncio.wait_for(asyncio.to_thread(self.provider.shutdown), timeout_s)
        except Exception as e:
            log.warning("trace export did not finish at shutdown: %s", type(e).__name__)


class _Span:
    __slots__ = ("_cm", "_span")

    def __init__(self, cm: Any) -> None:
        self._cm = cm
        self._span: Any = None

    def __enter__(self) -> _Span:
        self._span = self._cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)

    def set(self, key: str, value: Any) -> None:
        if value is not None and self._span is not None:
            self._span.set_attribute(key, _value(value))


class RequestTracer:
    """router.tracing.Tracer for one request: the hooks' spans are children of
    whatever span is current, the decision goes on the request's root span."""

    def __init__(self, tracing_: Tracing, root: Any) -> None:
        self.t = tracing_
        self.root = root

    def span(self, name: str, attrs: Mapping[str, Any]) -> _Span:
        return _Span(self.t.tracer.start_as_current_span(name, attributes=_attrs(attrs)))

    def headers(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        self.t.propagator.inject(carrier)
        return carrier

    def client(self, system: str, model: str, body: Mapping[str, Any], upstream: str) -> ClientCall:
        attrs = request_attrs(system, model, body, upstream)
        span = self.t.tracer.start_span(f"{attrs['gen_ai.operation.name']} {model}", kind=SpanKind.CLIENT, attributes=_attrs(attrs))
        return ClientCall(self, span)

    def record_decision(self, d: Any) -> None:
        deer = getattr(d, "deer", None)
        self.root.set_attributes(
            _attrs(
                {
                    "gen_ai.request.model": d.alias,
                    "gen_ai.response.model": d.upstream_model,
                    "gen_ai.usage.input_tokens": d.prompt_tokens,
                    "gen_ai.usage.output_tokens": d.completion_tokens,
                    "thinkgate.request_id": d.id,
                    "thinkgate.tenant": d.tenant,
                    "thinkgate.route": d.route,
                    "thinkgate.reason": d.reason,
                    "thinkgate.difficulty": d.difficulty,
                    "thinkgate.threshold": d.threshold,
                    "thinkgate.escalated": d.escalated,
                    "thinkgate.selfref.confidence": d.confidence,
                    "thinkgate.cache": d.cache,
                    "thinkgate.cache.similarity": d.similarity,
                    "thinkgate.upstream": d.upstream,
                    "thinkgate.fallback_from": d.fallback_from,
                    "thinkgate.cost_usd": d.cost,
                    "thinkgate.routing_ms": round(d.routing_ms, 3),
                    "thinkgate.deer.exit": deer.reason if deer else None,
                    "thinkgate.deer.exit_step": deer.exit_step if deer else None,
                    "thinkgate.deer.probes": deer.probes if deer else None,
                    "thinkgate.deer.thinking_tokens": deer.thinking_tokens if deer else None,
                    "thinkgate.deer.confidence": deer.confidence if deer else None,
                    "thinkgate.status": d.status,
                    "thinkgate.error": d.error,
                }
            )
        )


class ClientCall:
    """A CLIENT span that is current only while its own work runs (`use()`), so a
    stream's span can stay open across the yields of an async generator. As a
    context manager it ends the span (with the error, if one escapes)."""

    def __init__(self, owner: RequestTracer, span: Any) -> None:
        self.owner = owner
        self.span = span
        self._result: Mapping[str, Any] | None = None

    @property
    def headers(self) -> dict[str, str]:
        with self.use():
            return self.owner.headers()

    @contextmanager
    def use(self) -> Iterator[None]:
        with trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield

    def set(self, key: str, value: Any) -> None:
        if value is not None:
            self.span.set_attribute(key, _value(value))

    def result(self, result: Mapping[str, Any]) -> None:
        self._result = result

    def __enter__(self) -> ClientCall:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        self.end(self._result, None if isinstance(error, GeneratorExit) else error)

    def end(self, result: Mapping[str, Any] | None = None, error: BaseException | None = None) -> None:
        if result is not None:
            self.span.set_attributes(response_attrs(result))
        if error is not None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self.span.set_attribute("error.type", type(error).__name__)
        self.span.end()


# -- GenAI semantic conventions -------------------------------------------------------


def provider_name(ms: ModelSettings) -> str:
    if ms.provider == "litellm" and "/" in ms.model:
        return ms.model.split("/", 1)[0]  # litellm's provider prefix: openai/..., anthropic/...
    return {"litellm": "litellm", "openai": "openai", "llamacpp": "llama.cpp", "fake": "fake"}[ms.provider]


def request_attrs(system: str, model: str, body: Mapping[str, Any], upstream: str) -> dict[str, Any]:
    operation = "chat" if "messages" in body else "text_completion"
    return {
        "gen_ai.operation.name": operation,
        "gen_ai.system": system,  # pre-1.37 semconv name, still what most backends read
        "gen_ai.provider.name": system,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": body.get("max_completion_tokens") or body.get("max_tokens"),
        "gen_ai.request.temperature": body.get("temperature"),
        "gen_ai.request.top_p": body.get("top_p"),
        "gen_ai.request.stream": bool(body.get("stream")),
        "thinkgate.upstream": upstream,
    }


def response_attrs(result: Mapping[str, Any]) -> dict[str, Any]:
    usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    finish = [c.get("finish_reason") for c in result.get("choices") or [] if isinstance(c, dict) and c.get("finish_reason")]
    return _attrs(
        {
            "gen_ai.response.id": result.get("id"),
            "gen_ai.response.model": result.get("model"),
            "gen_ai.response.finish_reasons": finish or None,
            "gen_ai.usage.input_tokens": usage.get("prompt_tokens"),
            "gen_ai.usage.output_tokens": usage.get("completion_tokens"),
        }
    )


class TracedUpstream:
    """One CLIENT span per call of the wrapped upstream (each retry attempt when
    wrapped inside the resilience layer); the span is current while the upstream
    works, so the clients' `tracing.headers()` and DEER's spans hang under it."""

    def __init__(self, inner: Upstream, ms: ModelSettings) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.system = provider_name(ms)

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        call = tracing.client(self.system, self.model, body, self.name)
        if call is tracing.NO_CALL:
            return await self.inner.complete(body, ctx)
        try:
            with call.use():
                result = await self.inner.complete(body, ctx)
        except BaseException as e:
            call.end(error=e)
            raise
        _deer_attrs(call, ctx)
        call.end(result)
        return result

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        call = tracing.client(self.system, self.model, {**body, "stream": True}, self.name)
        gen = self.inner.stream(body, ctx)
        if call is tracing.NO_CALL:
            async for chunk in gen:
                yield chunk
            return
        last: dict[str, Any] = {}
        usage: dict[str, Any] | None = None
        first_at: float | None = None
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            while True:
                with call.use():  # attached and detached within one step: safe across yields
                    try:
                        chunk = await gen.__anext__()
                    except StopAsyncIteration:
                        break
                if first_at is None:
                    first_at = time.perf_counter()
                last = chunk
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                yield chunk
        except BaseException as e:
            error = e
            raise
        finally:
            with call.use():
                await gen.aclose()
            if first_at is not None:
                call.span.set_attribute("gen_ai.server.time_to_first_token", first_at - t0)
            _deer_attrs(call, ctx)
            summary = {"id": last.get("id"), "model": last.get("model"), "choices": last.get("choices"), "usage": usage}
            call.end(summary, None if isinstance(error, GeneratorExit) else error)

    async def ready(self) -> dict[str, Any]:
        return await self.inner.ready()

    async def close(self) -> None:
        await self.inner.close()


def _deer_attrs(call: ClientCall, ctx: CallContext) -> None:
    deer = ctx.deer
    if deer is not None:
        call.span.set_attributes(
            _attrs({"thinkgate.deer.exit": deer.reason or None, "thinkgate.deer.exit_step": deer.exit_step, "thinkgate.deer.probes": deer.probes})
        )


# -- the request's root span --------------------------------------------------------


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.t = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(TRACED_PATHS):
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parent = self.t.propagator.extract(carrier)
        method = scope.get("method", "GET")
        attrs = {"http.request.method": method, "url.path": path, "url.scheme": scope.get("scheme", "http")}
        with self.t.tracer.start_as_current_span(
            f"{method} {path}", context=parent, kind=SpanKind.SERVER, attributes=attrs, record_exception=True
        ) as root:
            token = tracing.bind(RequestTracer(self.t, root))

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    root.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        root.set_status(Status(StatusCode.ERROR))
                        root.set_attribute("error.type", str(status))
                await send(message)

            try:
                await self.app(scope, receive, traced_send)
            finally:
                tracing.unbind(token)
