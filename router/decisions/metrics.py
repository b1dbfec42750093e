"""Prometheus metrics, fed from the same `Decision` record the log stores.

`Metrics` registers its collectors on the `CollectorRegistry` it is given, never
on prometheus_client's global one, so two apps (or two tests) in one process do
not collide. Label values are bounded: routes, outcomes, cache kinds and DEER
exit reasons are small fixed sets; error kinds are reduced to a short code.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from router.types import Decision

LATENCY_ROUTING = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_UPSTREAM = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
DIFFICULTY = tuple(round(i / 10, 1) for i in range(1, 11))
_KIND = re.compile(r"[^a-z0-9_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def outcome(decision: Decision) -> str:
    if decision.status >= 500 or (decision.error and decision.status < 400):
        return "server_error"
    if decision.status >= 400:
        return "client_error"
    return "ok"


def error_kind(error: str) -> str:
    """A short, bounded label from an error string's head: `UpstreamTimeout: ...` or
    `upstream_timeout: ...` -> upstream_timeout; free text -> other."""
    head = error.split(":", 1)[0].strip()
    if not head or " " in head or len(head) > 40:
        return "other"
    return _KIND.sub("_", _CAMEL.sub("_", head).lower()).strip("_") or "other"


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "thinkgate") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ns = self.registry, namespace
        self.requests = Counter("requests", "Requests by final route and outcome", ["route", "outcome"], namespace=ns, registry=r)
        self.routing_latency = Histogram(
            "routing_latency_seconds", "Time thinkgate spent deciding (cache, embed, classify)", namespace=ns, registry=r, buckets=LATENCY_ROUTING
        )
        self.upstream_latency = Histogram(
            "upstream_latency_seconds", "Time spent in upstream model calls", ["route"], namespace=ns, registry=r, buckets=LATENCY_UPSTREAM
        )
        self.request_latency = Histogram(
            "request_latency_seconds", "End-to-end request time", ["route"], namespace=ns, registry=r, buckets=LATENCY_UPSTREAM
        )
        self.difficulty = Histogram("difficulty", "Classifier P(needs reasoning)", namespace=ns, registry=r, buckets=DIFFICULTY)
        self.cache_lookups = Counter("cache_lookups", "Cache lookups by result (exact | semantic | miss | bypass: Redis down)", ["result"], namespace=ns, registry=r)
        self.cache_hits = Counter("cache_hits", "Cache hits by kind (exact | semantic)", ["kind"], namespace=ns, registry=r)
        self.escalations = Counter("escalations", "Fast answers escalated to the reasoning route by Self-Ref", namespace=ns, registry=r)
        self.fallbacks = Counter("fallbacks", "Requests served by the other route after an upstream failure", ["from_route"], namespace=ns, registry=r)
        self.deer_requests = Counter("deer_requests", "Reasoning requests driven by DEER, by exit reason", ["reason"], namespace=ns, registry=r)
        self.deer_probes = Counter("deer_probes", "DEER trial-answer probes", namespace=ns, registry=r)
        self.deer_thinking_tokens = Counter("deer_thinking_tokens", "Thinking tokens generated under DEER", namespace=ns, registry=r)
        self.deer_probe_tokens = Counter("deer_probe_tokens", "Tokens spent on DEER probes", namespace=ns, registry=r)
        self.tokens = Counter("tokens", "Upstream tokens by route and kind (prompt | completion)", ["route", "kind"], namespace=ns, registry=r)
        self.cost = Counter("cost_usd", "Estimated cost (actual) and the always-reasoning baseline", ["kind"], namespace=ns, registry=r)
        self.errors = Counter("errors", "Failed requests by error kind", ["kind"], namespace=ns, registry=r)
        for o in ("ok", "client_error", "server_error"):  # export zeros so rates work from the first scrape
            for route in ("fast", "reasoning", "cache"):
                self.requests.labels(route, o)
        for k in ("exact", "semantic", "miss", "bypass"):
            self.cache_lookups.labels(k)
        for k in ("exact", "semantic"):
            self.cache_hits.labels(k)
        for k in ("actual", "baseline"):
            self.cost.labels(k)

    def observe(self, d: Decision) -> None:
        """Count one finished request. Never raises (metrics must not fail a request)."""
        try:
            self._observe(d)
        except Exception:  # noqa: BLE001
            import logging

            logging.getLogger("thinkgate.metrics").exception("metrics: could not observe %s", d.id)

    def _observe(self, d: Decision) -> None:
        route = d.route
        self.requests.labels(route, outcome(d)).inc()
        if route != "cache":
            self.routing_latency.observe(max(d.routing_ms, 0.0) / 1000.0)
        if d.upstream_ms > 0 and route in ("fast", "reasoning"):
            self.upstream_latency.labels(route).observe(d.upstream_ms / 1000.0)
        if d.total_ms > 0:
            self.request_latency.labels(route).observe(d.total_ms / 1000.0)
        if d.difficulty is not None:
            self.difficulty.observe(d.difficulty)
        if d.cache in ("exact", "semantic", "miss", "bypass"):
            self.cache_lookups.labels(d.cache).inc()
            if d.cache != "miss":
                self.cache_hits.labels(d.cache).inc()
        if d.escalated:
            self.escalations.inc()
        if d.fallback_from:
            self.fallbacks.labels(d.fallback_from if d.fallback_from in ("fast", "reasoning") else "other").inc()
        if d.deer is not None:
            self.deer_requests.labels(d.deer.reason or "none").inc()
            self.deer_probes.inc(max(d.deer.probes, 0))
            self.deer_thinking_tokens.inc(max(d.deer.thinking_tokens, 0))
            self.deer_probe_tokens.inc(max(d.deer.probe_tokens, 0))
        if route in ("fast", "reasoning"):
            self.tokens.labels(route, "prompt").inc(max(d.prompt_tokens, 0))
            self.tokens.labels(route, "completion").inc(max(d.completion_tokens, 0))
        self.cost.labels("actual").inc(max(d.cost, 0.0))
        self.cost.labels("baseline").inc(max(d.baseline_cost, 0.0))
        if d.error or d.status >= 400:
            self.errors.labels(error_kind(d.error) if d.error else f"http_{d.status}").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CacheStateCollector:
    """`thinkgate_cache_up`: 1 while the cache answers, 0 while Redis is down and
    requests bypass it. Register with `registry.register(CacheStateCollector(cache))`."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        state = str(getattr(self.cache, "state", "up"))
        g = GaugeMetricFamily("thinkgate_cache_up", "1 while the response cache answers, 0 while it is bypassed", labels=["state"])
        g.add_metric([state], 1.0 if state in ("up", "off") else 0.0)
        yield g
