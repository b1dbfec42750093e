from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from router.dashboard.demo import sample_decisions
from router.decisions.metrics import Metrics, error_kind
from router.types import Decision, DeerStats


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: Metrics, name: str, **labels: str) -> float:
    return samples(m).get((name, tuple(sorted(labels.items()))), 0.0)


def test_render_parses_before_any_traffic() -> None:
    m = Metrics(CollectorRegistry())
    fams = {f.name for f in text_string_to_metric_families(m.render().decode())}
    for name in (
        "thinkgate_requests",
        "thinkgate_routing_latency_seconds",
        "thinkgate_upstream_latency_seconds",
        "thinkgate_cache_hits",
        "thinkgate_escalations",
        "thinkgate_deer_probes",
        "thinkgate_deer_thinking_tokens",
        "thinkgate_errors",
    ):
        assert name in fams
    assert value(m, "thinkgate_requests_total", route="fast", outcome="ok") == 0.0
    assert m.content_type.startswith("text/plain")


def test_observe_counts_every_dimension() -> None:
    m = Metrics(CollectorRegistry())
    m.observe(Decision(route="fast", cache="miss", difficulty=0.2, routing_ms=4.0, upstream_ms=300.0, total_ms=310.0,
                       prompt_tokens=10, completion_tokens=20, cost=0.001, baseline_cost=0.01))
    m.observe(Decision(route="reasoning", escalated=True, cache="miss", difficulty=0.4, routing_ms=5.0, upstream_ms=2000.0,
                       total_ms=2100.0, deer=DeerStats(probes=3, exit_step=2, reason="confident", thinking_tokens=120, probe_tokens=40)))
    m.observe(Decision(route="cache", cache="semantic", similarity=0.97, routing_ms=0.5, total_ms=1.0))
    m.observe(Decision(route="reasoning", cache="miss", status=504, error="UpstreamTimeout: too slow", fallback_from="reasoning"))
    assert value(m, "thinkgate_requests_total", route="fast", outcome="ok") == 1
    assert value(m, "thinkgate_requests_total", route="reasoning", outcome="ok") == 1
    assert value(m, "thinkgate_requests_total", route="reasoning", outcome="server_error") == 1
    assert value(m, "thinkgate_requests_total", route="cache", outcome="ok") == 1
    assert value(m, "thinkgate_routing_latency_seconds_count") == 3  # cache hits are not routed
    assert value(m, "thinkgate_routing_latency_seconds_bucket", le="0.001") == 1  # the failed one (0 ms)
    assert value(m, "thinkgate_routing_latency_seconds_bucket", le="0.005") == 3
    assert value(m, "thinkgate_upstream_latency_seconds_count", route="reasoning") == 1
    assert value(m, "thinkgate_upstream_latency_seconds_sum", route="fast") == 0.3
    assert value(m, "thinkgate_cache_hits_total", kind="semantic") == 1
    assert value(m, "thinkgate_cache_lookups_total", result="miss") == 3
    assert value(m, "thinkgate_escalations_total") == 1
    assert value(m, "thinkgate_deer_requests_total", reason="confident") == 1
    assert value(m, "thinkgate_deer_probes_total") == 3
    assert value(m, "thinkgate_deer_thinking_tokens_total") == 120
    assert value(m, "thinkgate_deer_probe_tokens_total") == 40
    assert value(m, "thinkgate_errors_total", kind="upstream_timeout") == 1
    assert value(m, "thinkgate_fallbacks_total", from_route="reasoning") == 1
    assert value(m, "thinkgate_tokens_total", route="fast", kind="completion") == 20
    assert value(m, "thinkgate_cost_usd_total", kind="baseline") == 0.01
    assert value(m, "thinkgate_difficulty_count") == 2


def test_registries_are_separate_and_global_untouched() -> None:
    a, b = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    for d in sample_decisions(30):
        a.observe(d)
    assert sum(v for (n, _), v in samples(a).items() if n == "thinkgate_requests_total") == 30
    assert sum(v for (n, _), v in samples(b).items() if n == "thinkgate_requests_total") == 0
    assert REGISTRY.get_sample_value("thinkgate_requests_total", {"route": "fast", "outcome": "ok"}) is None


def test_observe_never_raises() -> None:
    m = Metrics(CollectorRegistry())
    bad = Decision()
    bad.deer = "nonsense"  # type: ignore[assignment]
    m.observe(bad)


def test_error_kind_is_bounded() -> None:
    assert error_kind("UpstreamTimeout: reasoning took 300 s") == "upstream_timeout"
    assert error_kind("rate_limit_exceeded: slow down") == "rate_limit_exceeded"
    assert error_kind("something went badly wrong") == "other"
    assert error_kind("x" * 100) == "other"


def test_cache_state_gauge_follows_the_cache():
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from router.decisions.metrics import CacheStateCollector, Metrics

    class Cache:
        state = "up"

    cache = Cache()
    registry = CollectorRegistry()
    m = Metrics(registry)
    registry.register(CacheStateCollector(cache))

    def up() -> float:
        fams = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
        return fams["thinkgate_cache_up"].samples[0].value

    assert up() == 1.0
    cache.state = "down"
    assert up() == 0.0
