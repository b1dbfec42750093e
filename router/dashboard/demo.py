"""Realistic synthetic decision records, for tests and for previewing the
dashboard without a model: `python -m router.dashboard.demo [--port 8099]`."""

from __future__ import annotations

import random
import time

from router.types import Decision, DeerStats

TENANTS = ("acme", "globex", "initech")
PRICES = {"fast": (0.15, 0.60), "reasoning": (1.10, 4.40)}  # USD per 1M tokens in / out


def _cost(route: str, tin: int, tout: int) -> float:
    pin, pout = PRICES[route]
    return (tin * pin + tout * pout) / 1e6


def sample_decisions(n: int = 120, *, seed: int = 7, now: float | None = None, span_s: float = 600.0) -> list[Decision]:
    """`n` decisions spread over the last `span_s` seconds, oldest first."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    out: list[Decision] = []
    threshold, selfref = 0.55, 0.6
    for i in range(n):
        created = now - span_s + span_s * (i + rng.random() * 0.5) / n
        tenant = TENANTS[rng.randrange(len(TENANTS))] if rng.random() < 0.9 else "default"
        d = Decision(created=created, tenant=tenant, alias="auto", stream=rng.random() < 0.3, threshold=threshold)
        d.routing_ms = rng.uniform(2.0, 9.0)
        tin = rng.randint(20, 400)
        if i > 5 and rng.random() < 0.12:
            d.route, d.reason = "cache", "cache"
            d.cache = "exact" if rng.random() < 0.6 else "semantic"
            d.similarity = None if d.cache == "exact" else round(rng.uniform(0.95, 0.995), 4)
            d.routing_ms = rng.uniform(0.3, 1.5)
            d.total_ms = d.routing_ms + rng.uniform(0.2, 1.0)
            d.prompt_tokens = tin
            d.baseline_cost = _cost("reasoning", tin, 600)
            out.append(d)
            continue
        d.cache = "miss"
        d.difficulty = round(min(0.999, max(0.001, rng.betavariate(1.3, 1.8))), 4)
        if d.difficulty >= threshold:
            route = "reasoning"
            d.reason = "classifier"
        else:
            d.confidence = round(rng.betavariate(5, 1.6), 4)
            d.selfref_threshold, d.selfref_mode = selfref, "mean_logprob"
            d.escalated = d.confidence < selfref
            route = "reasoning" if d.escalated else "fast"
            d.reason = "escalated" if d.escalated else "classifier"
        d.route = route  # type: ignore[assignment]
        d.upstream = route
        d.upstream_model = "qwen3-8b" if route == "reasoning" else "gpt-4o-mini"
        d.prompt_tokens = tin
        fast_out = rng.randint(30, 250)
        d.completion_tokens = fast_out
        d.upstream_ms = rng.uniform(250, 1200)
        d.cost = _cost("fast", tin, fast_out)
        if route == "reasoning":
            budget = rng.randint(600, 2400)
            early = rng.random() < 0.7
            used = int(budget * rng.uniform(0.25, 0.6)) if early else budget
            probes = rng.randint(1, 6) if early else rng.randint(4, 10)
            d.deer = DeerStats(
                probes=probes,
                exit_step=probes if early else None,
                reason="confident" if early else "natural_end",
                thinking_tokens=used,
                probe_tokens=probes * 18,
                answer_tokens=fast_out,
                confidence=round(rng.uniform(0.95, 0.99) if early else rng.uniform(0.6, 0.9), 4),
            )
            d.completion_tokens = used + fast_out + probes * 18
            r_ms = (used + fast_out) * rng.uniform(6, 12)
            d.cost = (d.cost if d.escalated else 0.0) + _cost("reasoning", tin, d.completion_tokens)
            d.upstream_ms = (d.upstream_ms if d.escalated else 0.0) + r_ms
        d.baseline_cost = _cost("reasoning", tin, 1800 + fast_out)
        if rng.random() < 0.03:
            d.status, d.error = 504, "upstream_timeout: reasoning did not answer within 300s"
        d.total_ms = d.routing_ms + d.upstream_ms + rng.uniform(0.5, 3.0)
        out.append(d)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import asyncio

    import uvicorn
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette

    from router.dashboard import routes
    from router.decisions.log import MemoryDecisionLog
    from router.decisions.metrics import Metrics

    ap = argparse.ArgumentParser(prog="python -m router.dashboard.demo")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("-n", type=int, default=150)
    args = ap.parse_args(argv)
    log, metrics = MemoryDecisionLog(), Metrics(CollectorRegistry())

    async def fill() -> None:
        for d in sample_decisions(args.n):
            await log.append(d)
            metrics.observe(d)

    asyncio.run(fill())
    uvicorn.run(Starlette(routes=routes(log, metrics)), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
