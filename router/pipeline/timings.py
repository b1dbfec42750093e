"""Where one request's time went: named steps on its Decision that add up to
`total_ms`, so a slow request can be read from its record instead of guessed at.

The steps are the request's trace spans (parse, cache, embed, classify) plus
one per upstream call ("upstream <model>"), the DEER probes that paused
thinking ("deer probes", carved out of the reasoning call they happened in),
and "other": the remainder (routing glue, writing the reply), so the sum is
the total by construction and nothing is hidden in it unnamed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from router import tracing
from router.types import Decision, DeerStats

log = logging.getLogger("thinkgate.pipeline")


@contextmanager
def step(d: Decision, name: str, attrs: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """Time a step and open its span (`thinkgate.<name>`); repeats add up (two cache lookups)."""
    t = time.perf_counter()
    try:
        with tracing.span(f"thinkgate.{name}", attrs or {}) as sp:
            yield sp
    finally:
        d.steps[name] = d.steps.get(name, 0.0) + (time.perf_counter() - t) * 1000


def upstream(d: Decision, model: str, ms: float, deer: DeerStats | None = None, probe_ms0: float = 0.0) -> None:
    """Record one upstream call of `ms` (its own span is the client's gen_ai span).
    Sequential DEER probes paused the thinking, so their time becomes a step of its own."""
    probes = 0.0
    if deer is not None and deer.sequential:
        probes = min(max(deer.probe_ms - probe_ms0, 0.0), ms)
    name, k = f"upstream {model}", 2
    while name in d.steps:  # each call its own step: an escalation shows both
        name, k = f"upstream {model} #{k}", k + 1
    d.steps[name] = ms - probes
    if probes:
        d.steps["deer probes"] = d.steps.get("deer probes", 0.0) + probes


def close(d: Decision, t0: float, slow_ms: float | None = None) -> None:
    """Set `total_ms` from `t0` (perf_counter at the request's arrival), round the
    steps and put the rest in "other"; warn when the request was slower than `slow_ms`."""
    total = (time.perf_counter() - t0) * 1000
    d.total_ms = round(total, 3)
    d.steps.pop("other", None)  # a record closed twice (an error after a partial stream) is re-summed
    steps = {k: round(v, 3) for k, v in d.steps.items()}
    steps["other"] = round(max(d.total_ms - sum(steps.values()), 0.0), 3)
    d.steps = steps
    if slow_ms is not None and total > slow_ms:
        name, ms = max(steps.items(), key=lambda kv: kv[1])
        log.warning(
            "slow request %s: %.0f ms > %.0f ms (slowest step: %s %.0f ms; route=%s reason=%s model=%s tokens=%d+%d)",
            d.id, total, slow_ms, name, ms, d.route, d.reason, d.upstream_model, d.prompt_tokens, d.completion_tokens,
        )
