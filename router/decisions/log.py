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
import time
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

from router.config import DecisionLogSettings
from router.decisions.summary import percentile, summarize  # noqa: F401  (re-exported for callers)
from router.types import Decision

log = logging.getLogger("thinkgate.decisions")

HIT_KINDS = ("exact", "semantic")
# records are appended when a request ends but stamped when it starts
SINCE_SLACK_S = 600.0


# -- records -------------------------------------------------------------------


FIELD_CHARS = 256  # any one text field of a record but the prompt (which has decisions.prompt_chars)


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
    for k, v in rec.items():
        # the model name, user, conversation id, error text... may come from a client:
        # each is cut, so a record's size is bounded whatever a request holds (20
        # requests with a 1 MB model name added 21 MB to Redis before)
        if k != "prompt" and isinstance(v, str) and len(v) > FIELD_CHARS:
            rec[k] = v[:FIELD_CHARS] + "…"
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
            from router.cache.redis_client import connect  # lazy: the embedded default never needs it

            client = connect(
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
                if not isinstance(rec, dict):
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
