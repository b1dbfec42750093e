"""The decision log: one record per request, kept where the dashboard, /metrics
and `thinkgate replay` can read it back.

Two backends behind one small interface:
- `MemoryDecisionLog`: a bounded in-process ring (the embedded default, tests).
- `RedisDecisionLog`: a Redis stream trimmed with `XADD ... MAXLEN ~ N`, shared by
  every gateway process. Redis trouble never reaches the request path: each call
  has a short timeout, failures flip the log to its local ring for a while
  (records appended meanwhile are flushed to the stream once Redis answers again),
  and `ready()` says so.

Records are plain JSON dicts (`Decision.to_dict()` minus what config keeps out:
the prompt unless `store_prompt`, truncated; the embedding unless
`store_embedding`). `summarize()` turns a batch of records into the numbers the
dashboard draws; it is a pure function so replay and tests can use it too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from router.config import DecisionLogSettings
from router.types import Decision

log = logging.getLogger("thinkgate.decisions")

HIT_KINDS = ("exact", "semantic")
ROUTE_KEYS = ("fast", "reasoning", "cache", "none")
# DEER exits that stopped thinking early, and the runs that thought to the end
EARLY_EXITS = ("confident", "max_probes", "budget", "wall_clock")
FULL_RUNS = ("natural_end", "off")
# records are appended when a request ends but stamped when it starts
SINCE_SLACK_S = 600.0
MIN_TIMELINE_S = 60.0


# -- records -------------------------------------------------------------------


def to_record(decision: Decision, settings: DecisionLogSettings | None = None) -> dict[str, Any]:
    """The JSON-ready record stored for `decision`, with config's privacy rules applied."""
    s = settings or DecisionLogSettings()
    rec = decision.to_dict()
    prompt = rec.get("prompt")
    if not s.store_prompt or not prompt:
        rec["prompt"] = None
    else:
        rec["prompt"] = str(prompt)[: s.prompt_chars]
    emb = rec.get("embedding")
    if not s.store_embedding or emb is None:
        rec["embedding"] = None
    else:
        rec["embedding"] = [round(float(x), 5) for x in emb]
    return rec


def _bool(value: Any) -> bool | None:
    if value is None or value == "" or value == "any":
        return None
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


class Filters:
    """Record filters shared by both backends and the dashboard API.

    `cache` takes a cache kind or "hit" (exact or semantic). Empty values mean "any".
    """

    __slots__ = ("route", "tenant", "escalated", "cache", "alias", "since")

    def __init__(
        self,
        route: str | None = None,
        tenant: str | None = None,
        escalated: bool | str | None = None,
        cache: str | None = None,
        alias: str | None = None,
        since: float | None = None,
    ) -> None:
        self.route = route or None
        self.tenant = tenant or None
        self.escalated = _bool(escalated)
        self.cache = cache or None
        self.alias = alias or None
        self.since = since

    def __bool__(self) -> bool:
        return any(getattr(self, k) is not None for k in self.__slots__)

    def match(self, rec: dict[str, Any]) -> bool:
        if self.route is not None and rec.get("route") != self.route:
            return False
        if self.tenant is not None and rec.get("tenant") != self.tenant:
            return False
        if self.escalated is not None and bool(rec.get("escalated")) != self.escalated:
            return False
        if self.cache is not None:
            kind = rec.get("cache")
            if self.cache == "hit":
                if kind not in HIT_KINDS:
                    return False
            elif kind != self.cache:
                return False
        if self.alias is not None and rec.get("alias") != self.alias:
            return False
        if self.since is not None and float(rec.get("created") or 0) < self.since:
            return False
        return True


# -- the interface -------------------------------------------------------------


@runtime_checkable
class DecisionLog(Protocol):
    async def append(self, decision: Decision) -> None:
        """Store one record. Never raises: a log failure must not fail a request."""
        ...

    async def recent(self, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        """Newest first; filters: route, tenant, escalated, cache ("hit" too), alias, since."""
        ...

    async def get(self, id: str) -> dict[str, Any] | None: ...

    async def summary(self, window: int | None = None, since: float | None = None) -> dict[str, Any]:
        """`summarize()` over the newest `window` records (created >= `since`)."""
        ...

    async def ready(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


# -- in-memory ring ------------------------------------------------------------


class MemoryDecisionLog:
    """A bounded ring in process memory: O(1) append and lookup by id."""

    backend = "memory"

    def __init__(self, settings: DecisionLogSettings | None = None, *, max_records: int | None = None) -> None:
        self.settings = settings or DecisionLogSettings()
        self.max_records = max_records or self.settings.max_records
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.appended = 0

    def __len__(self) -> int:
        return len(self._records)

    def add_record(self, rec: dict[str, Any]) -> None:
        self._records[rec["id"]] = rec
        self._records.move_to_end(rec["id"])
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)
        self.appended += 1

    async def append(self, decision: Decision) -> None:
        try:
            self.add_record(to_record(decision, self.settings))
        except Exception:  # a malformed record must not fail the request
            log.exception("decision log: could not record %s", getattr(decision, "id", "?"))

    def newest(self, limit: int, filters: Filters | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if limit <= 0:
            return out
        for rec in reversed(self._records.values()):
            if filters is not None and filters.since is not None and float(rec.get("created") or 0) < filters.since - SINCE_SLACK_S:
                break  # arrival order: nothing older can match (slack: long requests log late)
            if filters is None or filters.match(rec):
                out.append(rec)
                if len(out) >= limit:
                    break
        return out

    async def recent(self, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        return self.newest(limit, Filters(**filters))

    async def get(self, id: str) -> dict[str, Any] | None:
        return self._records.get(id)

    async def summary(self, window: int | None = None, since: float | None = None) -> dict[str, Any]:
        recs = self.newest(window or self.settings.summary_window, Filters(since=since))
        out = summarize(recs)
        out["log"] = await self.ready()
        return out

    async def ready(self) -> dict[str, Any]:
        return {"ok": True, "backend": self.backend, "records": len(self._records), "max_records": self.max_records}

    async def close(self) -> None:
        return None


# -- Redis stream --------------------------------------------------------------


class RedisDecisionLog:
    """A bounded Redis stream (`XADD key MAXLEN ~ max_records`), one JSON field per entry.

    A local ring mirrors the newest records, so the dashboard keeps working (for
    this process) while Redis is down, and `get()` of a recent id needs no scan.
    """

    backend = "redis"

    def __init__(self, url: str, settings: DecisionLogSettings | None = None, *, client: Any = None) -> None:
        self.settings = settings or DecisionLogSettings()
        self.url = url
        self.key = self.settings.stream_key
        self.timeout = self.settings.timeout_ms / 1000.0
        self.local = MemoryDecisionLog(self.settings, max_records=min(self.settings.max_records, 5000))
        self._pending: OrderedDict[str, dict[str, Any]] = OrderedDict()  # appended while Redis was down
        self._flush_lock = asyncio.Lock()
        self._down_until = 0.0
        self.last_error: str | None = None
        self.failures = 0
        if client is None:
            import redis.asyncio as aioredis  # lazy: the embedded default never needs it

            client = aioredis.from_url(
                url,
                socket_timeout=max(self.timeout * 4, 0.5),
                socket_connect_timeout=max(self.timeout * 4, 0.5),
                decode_responses=False,
            )
        self.client = client

    # health ---------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self.last_error is not None

    def _usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, err: BaseException) -> None:
        self.failures += 1
        first = self.last_error is None
        self.last_error = f"{op}: {type(err).__name__}: {err}"[:300]
        self._down_until = time.monotonic() + self.settings.retry_s
        # log the transition, not every request while it stays down
        (log.warning if first else log.debug)("decision log: redis %s; using the local ring", self.last_error)

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.warning("decision log: redis is back")
        self.last_error = None

    async def _call(self, op: str, coro: Any) -> Any:
        return await asyncio.wait_for(coro, self.timeout if op == "xadd" else max(self.timeout * 20, 1.0))

    # writes ---------------------------------------------------------------

    def _fields(self, rec: dict[str, Any]) -> dict[str, str]:
        return {"id": rec["id"], "d": json.dumps(rec, separators=(",", ":"), default=str)}

    async def append(self, decision: Decision) -> None:
        try:
            rec = to_record(decision, self.settings)
        except Exception:
            log.exception("decision log: could not record %s", getattr(decision, "id", "?"))
            return
        self.local.add_record(rec)
        if not self._usable():
            self._park(rec)
            return
        try:
            if self._pending and not self._flush_lock.locked():
                async with self._flush_lock:
                    await self._flush()
            await self._call(
                "xadd",
                self.client.xadd(self.key, self._fields(rec), maxlen=self.settings.max_records, approximate=True),
            )
            self._recovered()
        except Exception as e:  # noqa: BLE001 - any Redis/transport failure degrades, never raises
            self._park(rec)
            self._failed("xadd", e)

    def _park(self, rec: dict[str, Any]) -> None:
        self._pending[rec["id"]] = rec
        while len(self._pending) > self.local.max_records:
            self._pending.popitem(last=False)

    async def _flush(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        batch = list(self._pending.values())
        for rec in batch:
            pipe.xadd(self.key, self._fields(rec), maxlen=self.settings.max_records, approximate=True)
        await self._call("flush", pipe.execute())
        for rec in batch:
            self._pending.pop(rec["id"], None)

    # reads ----------------------------------------------------------------

    async def _scan(self, limit: int, filters: Filters | None, find: str | None = None) -> list[dict[str, Any]]:
        """Newest-first pages of XREVRANGE until `limit` matches (or `find` is seen)."""
        out: list[dict[str, Any]] = []
        upper = b"+"
        scanned = 0
        page = max(min(limit * 2, 1000), 100)
        while scanned < self.settings.max_records + page:
            entries = await self._call("xrevrange", self.client.xrevrange(self.key, max=upper, min=b"-", count=page))
            if not entries:
                break
            for entry_id, fields in entries:
                scanned += 1
                if find is not None:
                    if fields.get(b"id", b"").decode() != find:
                        continue
                try:
                    rec = json.loads(fields[b"d"])
                except (KeyError, ValueError):
                    continue
                if filters is not None and filters.since is not None and float(rec.get("created") or 0) < filters.since - SINCE_SLACK_S:
                    return out
                if filters is None or filters.match(rec):
                    out.append(rec)
                    if len(out) >= limit:
                        return out
            last = entries[-1][0]
            last = last.decode() if isinstance(last, bytes) else last
            upper = ("(" + last).encode()
            if len(entries) < page:
                break
        return out

    async def recent(self, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        f = Filters(**filters)
        if limit <= 0:
            return []
        if self._usable():
            try:
                out = await self._scan(limit, f)
                self._recovered()
                return out
            except Exception as e:  # noqa: BLE001
                self._failed("xrevrange", e)
        return self.local.newest(limit, f)

    async def get(self, id: str) -> dict[str, Any] | None:
        rec = await self.local.get(id)
        if rec is not None or not self._usable():
            return rec
        try:
            found = await self._scan(1, None, find=id)
            self._recovered()
            return found[0] if found else None
        except Exception as e:  # noqa: BLE001
            self._failed("xrevrange", e)
            return None

    async def summary(self, window: int | None = None, since: float | None = None) -> dict[str, Any]:
        recs = await self.recent(window or self.settings.summary_window, since=since)
        out = summarize(recs)
        out["log"] = await self.ready()
        return out

    async def ready(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.backend, "key": self.key, "max_records": self.settings.max_records}
        if self._usable():
            try:
                info["records"] = int(await self._call("xlen", self.client.xlen(self.key)))
                self._recovered()
            except Exception as e:  # noqa: BLE001
                self._failed("xlen", e)
        info["ok"] = not self.degraded
        info["degraded"] = self.degraded
        if self.degraded:
            info["error"] = self.last_error
            info["fallback"] = "local ring"
            info["pending"] = len(self._pending)
        return info

    async def close(self) -> None:
        if self._pending and self._usable():
            try:
                await self._flush()
            except Exception as e:  # noqa: BLE001
                self._failed("flush", e)
        try:
            await self.client.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection is best effort
            pass


def build_log(settings: Any) -> DecisionLog:
    """The log config asks for: `settings` is the whole `Settings` or its `decisions` section.

    backend "auto" uses Redis when `decisions.redis_url` (or, given the whole
    Settings, `cache.redis_url`) is set, else the in-memory ring.
    """
    section: DecisionLogSettings = getattr(settings, "decisions", settings)
    url = section.redis_url
    if url is None and section.backend == "auto":
        url = getattr(getattr(settings, "cache", None), "redis_url", None)
    if section.backend == "memory" or url is None:
        if section.backend == "redis":
            raise ValueError("decisions.backend is 'redis' but no redis_url is set")
        return MemoryDecisionLog(section)
    return RedisDecisionLog(url, section)


# -- the dashboard's numbers ----------------------------------------------------


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
    recs = sorted(records, key=lambda r: float(r.get("created") or 0))
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
