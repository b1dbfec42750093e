"""The dashboard's numbers from a batch of decision records: a pure function,
so the memory ring and the Redis stream summarise alike and tests need no server."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

ROUTE_KEYS = ("fast", "reasoning", "cache", "none")
# DEER exits that stopped thinking early, and the runs that thought to the end
EARLY_EXITS = ("confident", "max_probes", "budget", "wall_clock")
FULL_RUNS = ("natural_end", "off")
MIN_TIMELINE_S = 60.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an unsorted list (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def _bucket_seconds(span: float, max_buckets: int = 60) -> int:
    for b in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400):
        if span / b <= max_buckets:
            return b
    return 86400 * max(1, math.ceil(span / 86400 / max_buckets))


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


TURN_KEYS = ("chat", "task", "relay", "summary")
MAX_SESSIONS = 20


def agent_sessions(recs: list[dict[str, Any]], limit: int = MAX_SESSIONS) -> dict[str, Any]:
    """Turn types over all records, and per agent session (policies.agent_turn)
    its turns by type and its reasoning calls: turns the reasoning model
    answered, and of those the relay turns (what `routing.agent.relay: fast`
    would send to the fast model). Newest sessions first."""
    turns = Counter(str(r["turn"]) for r in recs if r.get("turn") in TURN_KEYS)
    sessions: dict[str, dict[str, Any]] = {}
    for r in recs:  # oldest first
        sid = r.get("session")
        if not sid or r.get("turn") not in TURN_KEYS:
            continue
        s = sessions.get(sid)
        if s is None:
            s = sessions[sid] = {"session": sid, "tenant": r.get("tenant"), "first": r.get("created"), "turns": dict.fromkeys(TURN_KEYS, 0),
                                 "reasoning_calls": 0, "relay_reasoning": 0, "models": []}  # fmt: skip
        s["turns"][r["turn"]] += 1
        s["last"] = r.get("created")
        if r.get("route") == "reasoning":
            s["reasoning_calls"] += 1
            s["relay_reasoning"] += 1 if r["turn"] == "relay" else 0
        model = r.get("upstream_model")
        if model and model not in s["models"]:
            s["models"].append(model)
    newest = sorted(sessions.values(), key=lambda s: float(s.get("last") or 0), reverse=True)
    return {"turns": {k: turns.get(k, 0) for k in TURN_KEYS}, "sessions_total": len(sessions), "sessions": newest[:limit]}
_NUMBERS = ("created", "status", "confidence", "similarity", "difficulty", "threshold", "total_ms", "upstream_ms",
            "routing_ms", "cost", "baseline_cost")  # fmt: skip
_LABELS = ("route", "cache", "alias", "tenant", "error")
_DEER_NUMBERS = ("thinking_tokens", "probe_tokens", "probes", "exit_step", "saved_tokens")


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def sound(r: Any) -> bool:
    """Whether `summarize` can read record `r`: the fields it does arithmetic on are
    finite numbers (or absent), the ones it counts by are strings."""
    if not isinstance(r, dict):
        return False
    if not all(_number(r.get(k)) for k in _NUMBERS):
        return False
    if not all(r.get(k) is None or isinstance(r.get(k), str) for k in _LABELS):
        return False
    deer = r.get("deer")
    if deer is None:
        return True
    return isinstance(deer, dict) and all(_number(deer.get(k)) for k in _DEER_NUMBERS) and (
        deer.get("reason") is None or isinstance(deer.get("reason"), str)
    )


def summarize(records: Iterable[dict[str, Any]], *, now: float | None = None, bins: int = 20) -> dict[str, Any]:
    """Aggregate records (any order) into what the dashboard shows.

    - share: fraction of requests by route (fast | reasoning | cache | none).
    - escalation rate: escalated / requests the fast model answered first.
    - cache hit rate: (exact + semantic) / requests that looked the cache up.
    - DEER saved tokens (estimate): for each early exit, the mean thinking tokens
      of full-length runs (natural end or DEER off) in the same window minus the
      tokens it used; None when there is no full-length run to compare with.
    - cost: estimated cost vs what the always-reasoning route would have cost.
    """
    # a record that is not what this code writes (edited in Redis, an older version, a
    # bug) is left out rather than failing the whole dashboard
    recs = sorted((r for r in records if sound(r)), key=lambda r: float(r.get("created") or 0))
    now = time.time() if now is None else now
    n = len(recs)
    routes = Counter(r.get("route", "none") for r in recs)
    errors = [r for r in recs if r.get("error") or int(r.get("status") or 200) >= 400]
    error_kinds = Counter(str(r.get("error") or f"http_{r.get('status')}").split(":")[0][:60] for r in errors)

    eligible = [r for r in recs if r.get("escalated") or r.get("route") == "fast"]
    escalated = sum(1 for r in eligible if r.get("escalated"))
    confidences = [float(r["confidence"]) for r in recs if r.get("confidence") is not None]

    looked = [r for r in recs if r.get("cache") in ("miss", "exact", "semantic")]
    cache_kinds = Counter(r.get("cache") for r in looked)
    hits = cache_kinds["exact"] + cache_kinds["semantic"]
    sims = [float(r["similarity"]) for r in recs if r.get("cache") == "semantic" and r.get("similarity") is not None]

    scored = [float(r["difficulty"]) for r in recs if r.get("difficulty") is not None]
    hist = [0] * bins
    for p in scored:
        hist[min(bins - 1, max(0, int(p * bins)))] += 1
    thresholds: dict[str, float] = {}
    for r in recs:  # oldest first: the newest threshold per alias wins
        if r.get("threshold") is not None:
            thresholds[r.get("alias") or ""] = float(r["threshold"])
    threshold = None
    if thresholds:
        newest = next((r for r in reversed(recs) if r.get("threshold") is not None), None)
        threshold = float(newest["threshold"]) if newest else None

    deer_recs = [r for r in recs if r.get("deer")]
    reasons = Counter((r["deer"].get("reason") or "none") for r in deer_recs)
    thinking = sum(int(r["deer"].get("thinking_tokens") or 0) for r in deer_recs)
    probe_tokens = sum(int(r["deer"].get("probe_tokens") or 0) for r in deer_recs)
    probes = sum(int(r["deer"].get("probes") or 0) for r in deer_recs)
    early = [r for r in deer_recs if r["deer"].get("reason") in EARLY_EXITS and r["deer"].get("exit_step") is not None]
    full = [int(r["deer"].get("thinking_tokens") or 0) for r in deer_recs if r["deer"].get("reason") in FULL_RUNS]
    saved: float | None = None
    explicit = [r["deer"]["saved_tokens"] for r in early if r["deer"].get("saved_tokens") is not None]
    if explicit:
        saved = float(sum(explicit))
    elif full and early:
        ref = sum(full) / len(full)
        saved = float(sum(max(0.0, ref - int(r["deer"].get("thinking_tokens") or 0)) for r in early))

    latency: dict[str, Any] = {}
    for route in ("fast", "reasoning", "cache"):
        rs = [r for r in recs if r.get("route") == route and not r.get("error")]
        tot = [float(r.get("total_ms") or 0) for r in rs]
        up = [float(r.get("upstream_ms") or 0) for r in rs]
        latency[route] = {
            "n": len(rs),
            "p50": percentile(tot, 50),
            "p90": percentile(tot, 90),
            "p99": percentile(tot, 99),
            "upstream_p50": percentile(up, 50),
        }
    routing = [float(r.get("routing_ms") or 0) for r in recs if r.get("route") != "cache"]
    latency["routing"] = {"n": len(routing), "p50": percentile(routing, 50), "p90": percentile(routing, 90), "p99": percentile(routing, 99)}

    cost = sum(float(r.get("cost") or 0) for r in recs)
    baseline = sum(float(r.get("baseline_cost") or 0) for r in recs)

    # timeline: fixed-size buckets ending now (or at the newest record, for old data)
    timeline: dict[str, Any] = {"bucket_s": 1, "buckets": []}
    if recs:
        t_first = float(recs[0].get("created") or now)
        t_last = float(recs[-1].get("created") or now)
        end = now if now - t_last < 3600 else t_last
        t_first = min(t_first, end - MIN_TIMELINE_S)  # a fresh gateway still gets a readable axis
        b = _bucket_seconds(max(end - t_first, 1.0))
        start = math.floor(t_first / b) * b
        count = int(math.floor(end / b) * b - start) // b + 1
        buckets = [
            {"t": start + i * b, "fast": 0, "reasoning": 0, "cache": 0, "none": 0, "error": 0, "escalated": 0, "cost": 0.0, "baseline": 0.0}
            for i in range(count)
        ]
        for r in recs:
            i = min(count - 1, max(0, int((float(r.get("created") or start) - start) // b)))
            bk = buckets[i]
            route = r.get("route") if r.get("route") in ROUTE_KEYS else "none"
            bk[route] += 1
            bk["error"] += 1 if (r.get("error") or int(r.get("status") or 200) >= 400) else 0
            bk["escalated"] += 1 if r.get("escalated") else 0
            bk["cost"] += float(r.get("cost") or 0)
            bk["baseline"] += float(r.get("baseline_cost") or 0)
        timeline = {"bucket_s": b, "buckets": buckets}

    return {
        "now": now,
        "total": n,
        "agents": agent_sessions(recs),
        "window": {"records": n, "from": recs[0].get("created") if recs else None, "to": recs[-1].get("created") if recs else None},
        "routes": {k: routes.get(k, 0) for k in ROUTE_KEYS},
        "share": {k: (_ratio(routes.get(k, 0), n) or 0.0) for k in ROUTE_KEYS},
        "tenants": sorted({str(r.get("tenant")) for r in recs if r.get("tenant") is not None}),
        "aliases": sorted({str(r.get("alias")) for r in recs if r.get("alias")}),
        "errors": {"total": len(errors), "rate": _ratio(len(errors), n), "kinds": dict(error_kinds)},
        "escalation": {
            "eligible": len(eligible),
            "escalated": escalated,
            "rate": _ratio(escalated, len(eligible)),
            "confidence_p50": percentile(confidences, 50),
        },
        "cache": {
            "lookups": len(looked),
            "exact": cache_kinds["exact"],
            "semantic": cache_kinds["semantic"],
            "miss": cache_kinds["miss"],
            "hits": hits,
            "hit_rate": _ratio(hits, len(looked)),
            "similarity_p50": percentile(sims, 50),
        },
        "difficulty": {
            "n": len(scored),
            "bins": hist,
            "edges": [round(i / bins, 4) for i in range(bins + 1)],
            "threshold": threshold,
            "thresholds": thresholds,
            "above": sum(1 for p in scored if threshold is not None and p >= threshold),
        },
        "deer": {
            "requests": len(deer_recs),
            "early_exits": len(early),
            "probes": probes,
            "thinking_tokens": thinking,
            "probe_tokens": probe_tokens,
            "saved_tokens_est": saved,
            "reasons": dict(reasons),
        },
        "latency": latency,
        "cost": {
            "actual": cost,
            "baseline": baseline,
            "saved": baseline - cost,
            "saved_pct": _ratio(baseline - cost, baseline),
        },
        "timeline": timeline,
    }
