"""OpenTelemetry traces, off by default and configured only by the standard
OTEL_* environment variables (router.tracing.setup reads them).

This face imports nothing heavy: with tracing off no opentelemetry module is
loaded, `span()` returns one shared no-op and `headers()` returns None, so the
hooks in the pipeline, the upstream clients and DEER cost a context-variable
read. With tracing on, the ASGI middleware (router.tracing.otel) sets the
request's `Tracer` in a context variable for the length of the request: the
hooks find it there (state scoped to the request, not a process global), and
tasks the request spawns (DEER's concurrent probes) inherit it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Protocol

__all__ = ["Tracer", "current", "span", "client", "headers", "record_decision", "from_env", "enabled_by"]


class Span(Protocol):
    def set(self, key: str, value: Any) -> None: ...


class Tracer(Protocol):
    """What a request's hooks call; router.tracing.otel implements it."""

    def span(self, name: str, attrs: Mapping[str, Any]) -> Any: ...  # a context manager yielding a Span
    def headers(self) -> dict[str, str]: ...  # traceparent (and tracestate) of the current span
    def record_decision(self, decision: Any) -> None: ...  # the decision, on the request's root span
    def client(self, system: str, model: str, body: Mapping[str, Any], upstream: str) -> Any: ...


_current: ContextVar[Tracer | None] = ContextVar("thinkgate_tracer", default=None)


class _NoCall:
    """The shared no-op upstream call: no span, no headers to send."""

    __slots__ = ()
    headers = None

    def __enter__(self) -> _NoCall:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def result(self, result: Any) -> None:
        return None

    def set(self, key: str, value: Any) -> None:
        return None


NO_CALL = _NoCall()


class _NoSpan:
    """The shared no-op: a context manager that is its own span."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def set(self, key: str, value: Any) -> None:
        return None


NO_SPAN = _NoSpan()


def current() -> Tracer | None:
    return _current.get()


def span(name: str, attrs: Mapping[str, Any] | None = None) -> Any:
    """`with tracing.span("thinkgate.cache", {"thinkgate.cache.lookup": "exact"}) as s: s.set(k, v)`."""
    t = _current.get()
    if t is None:
        return NO_SPAN
    return t.span(name, attrs or {})


def client(system: str, model: str, body: Mapping[str, Any], upstream: str) -> Any:
    """One upstream HTTP call as a CLIENT span (GenAI attributes):
    `with tracing.client(...) as call: post(headers=call.headers); call.result(data)`.
    The span is not made current, so it may stay open across a stream's yields."""
    t = _current.get()
    if t is None:
        return NO_CALL
    return t.client(system, model, body, upstream)


def headers() -> dict[str, str] | None:
    """Headers that pass the current trace to an upstream (W3C traceparent); None when off."""
    t = _current.get()
    return t.headers() if t is not None else None


def record_decision(decision: Any) -> None:
    t = _current.get()
    if t is not None:
        t.record_decision(decision)


_TRUE = ("1", "true", "yes", "on")


def enabled_by(env: Mapping[str, str]) -> bool:
    """On when an exporter is named or an OTLP endpoint is set, unless OTEL_SDK_DISABLED.
    (The OTel default exporter is otlp; thinkgate exports only when told where.)"""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def from_env(env: Mapping[str, str]) -> Any:
    """The process's tracing (router.tracing.otel.Tracing), or None when it is off
    or cannot start (a bad exporter setting is logged; requests run untraced)."""
    if not enabled_by(env):
        return None
    import logging

    try:
        from router.tracing.otel import Tracing

        return Tracing.from_env(env)
    except Exception as e:  # tracing must never stop the gateway from starting
        logging.getLogger("thinkgate.tracing").warning("tracing is off: %s: %s", type(e).__name__, e)
        return None


def bind(tracer: Tracer | None) -> Any:
    """Set the request's tracer; returns the token for `unbind`."""
    return _current.set(tracer)


def unbind(token: Any) -> None:
    _current.reset(token)
