"""The outcome log: graded pairs from live traffic, in the outcome format of
ARCHITECTURE.md plus where they came from (tenant, route taken, difficulty,
artifact version, time). A bounded Redis stream when a redis_url is known (one
entry per record, field `r` = the JSON), else a local JSONL file (the embedded
default). Records carry their tenant; readers filter by it.

`calibrate train --outcomes` reads either (calibrate/outcome_log.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from router.config import Settings

log = logging.getLogger("thinkgate.learning")


class OutcomeLog(Protocol):
    kind: str

    async def append(self, record: dict[str, Any]) -> None: ...
    async def recent(self, n: int, tenant: str | None = None) -> list[dict[str, Any]]: ...
    async def count(self) -> int: ...
    async def close(self) -> None: ...


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class JsonlOutcomeLog:
    """Appends one line per record. Writes go through a thread so a slow disk never
    stalls the event loop; a lock keeps lines whole."""

    kind = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = asyncio.Lock()
        self._count: int | None = None

    def describe(self) -> str:
        return str(self.path)

    def _write(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            # a line torn by a crash mid-write must not swallow the next record
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write((line + "\n").encode("utf-8"))

    async def append(self, record: dict[str, Any]) -> None:
        line = _line(record)
        async with self._lock:
            await asyncio.to_thread(self._write, line)
            if self._count is not None:
                self._count += 1

    def _count_lines(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                return sum(1 for ln in fh if ln.strip())
        except FileNotFoundError:
            return 0

    async def count(self) -> int:
        async with self._lock:  # counted once, then kept up to date by append
            if self._count is None:
                self._count = await asyncio.to_thread(self._count_lines)
            return self._count

    def _tail(self, n: int) -> list[str]:
        """The last n non-empty lines, read backwards in blocks (the file may be large)."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with fh:
            fh.seek(0, os.SEEK_END)
            pos, buf = fh.tell(), b""
            while pos > 0 and buf.count(b"\n") <= n:
                step = min(1 << 16, pos)
                pos -= step
                fh.seek(pos)
                buf = fh.read(step) + buf
        lines = [ln for ln in buf.decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-n:] if pos == 0 else lines[1:][-n:]  # a partial first line is dropped

    async def recent(self, n: int, tenant: str | None = None) -> list[dict[str, Any]]:
        # read more than n when filtering by tenant: others' records are skipped
        # a few lines more than n: a torn last line (a crash mid-write) is skipped
        lines = await asyncio.to_thread(self._tail, (n if tenant is None else n * 4) + 4)
        out = []
        for ln in reversed(lines):
            try:
                rec = json.loads(ln)
            except ValueError:
                continue  # a line cut by a crash mid-write; the rest of the log is fine
            if tenant is None or rec.get("tenant") == tenant:
                out.append(rec)
            if len(out) >= n:
                break
        return out

    async def close(self) -> None:
        return None


class RedisOutcomeLog:
    """XADD with MAXLEN ~ max_records (approximate trimming is O(1) per add)."""

    kind = "redis"

    def __init__(self, url: str, key: str, max_records: int, timeout_ms: float) -> None:
        from router.cache.redis_client import open_client, redact

        self.url, self.key, self.max_records = redact(url), key, max_records
        self.timeout = timeout_ms / 1000
        self._redis = open_client(url, self.timeout, 4, self.timeout)

    def describe(self) -> str:
        return f"{self.url} stream {self.key}"

    async def append(self, record: dict[str, Any]) -> None:
        await asyncio.wait_for(
            self._redis.xadd(self.key, {"r": _line(record).encode()}, maxlen=self.max_records, approximate=True), self.timeout
        )

    async def recent(self, n: int, tenant: str | None = None) -> list[dict[str, Any]]:
        rows = await asyncio.wait_for(self._redis.xrevrange(self.key, count=n if tenant is None else n * 4), self.timeout * 20)
        out = []
        for _, fields in rows:
            try:
                rec = json.loads(fields[b"r"])
            except (KeyError, ValueError):
                continue
            if tenant is None or rec.get("tenant") == tenant:
                out.append(rec)
            if len(out) >= n:
                break
        return out

    async def count(self) -> int:
        return int(await asyncio.wait_for(self._redis.xlen(self.key), self.timeout))

    async def close(self) -> None:
        try:
            await self._redis.aclose()
        except Exception:  # closing at shutdown; nothing left to tell
            log.debug("closing the outcome log's Redis client failed", exc_info=True)


def build_outcome_log(settings: Settings) -> JsonlOutcomeLog | RedisOutcomeLog:
    s = settings.learning.outcome_log
    url = s.redis_url or (settings.cache.redis_url if settings.cache.enabled else None)
    if s.backend == "redis" and url is None:
        raise ValueError("learning.outcome_log.backend is 'redis' but no redis_url is set (here or in cache)")
    if s.backend == "jsonl" or url is None:
        return JsonlOutcomeLog(s.path)
    return RedisOutcomeLog(url, s.stream_key, s.max_records, s.timeout_ms)
