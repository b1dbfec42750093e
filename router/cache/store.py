"""The storage seam under the response cache, and its embedded implementation.

A `Store` keeps entries by exact key and answers nearest-neighbour queries
within a scope. Two implementations: `RedisStore` (router/cache/redis_store.py,
shared by every replica) and `MemoryStore` here — the embedded default when no
Redis is configured. `MemoryStore` is an in-process LRU with per-entry TTL and
a numpy vector index; it is NOT shared between gateway processes or replicas,
and everything in it is lost when the process stops.

Stores never raise on the request path: a failure is a miss (or a skipped
write), counted and visible in `ready()`.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from router.cache.index import Match, VectorIndex

_COMPRESS_OVER = 1024  # bytes; streamed chunk lists repeat id/model/created and shrink ~10x


@dataclass
class Entry:
    key: str
    scope: str
    tenant: str
    alias: str
    route: str
    created: float  # unix seconds
    expires: float  # unix seconds
    data: dict[str, Any]  # {"response": {...}, "chunks": [...] | None}


def encode(data: dict[str, Any]) -> tuple[bytes, bool]:
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > _COMPRESS_OVER:
        return zlib.compress(raw, 1), True
    return raw, False


def decode(payload: bytes, compressed: bool) -> dict[str, Any]:
    if compressed:
        payload = zlib.decompress(payload)
    return json.loads(payload)


class Store(Protocol):
    kind: str

    async def get(self, key: str) -> Entry | None: ...

    async def put(self, entry: Entry, vec: np.ndarray | None) -> bool: ...

    async def nearest(
        self, scope: str, vec: np.ndarray, threshold: float, *, min_created: float
    ) -> list[Match]: ...

    def forget(self, key: str) -> None:
        """The entry behind an index row is gone: drop the row."""
        ...

    async def invalidate(self, tenant: str | None, alias: str | None) -> int: ...

    async def ready(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


@dataclass
class _Slot:
    entry: Entry
    payload: bytes
    compressed: bool


class MemoryStore:
    """Embedded backend: bounded by entry count and payload bytes, LRU out."""

    kind = "memory"
    state = "up"

    def __init__(self, *, max_entries: int, max_bytes: int, max_entry_bytes: int | None = None, dim: int = 384) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_bytes, max_entry_bytes or max_bytes)
        self.index = VectorIndex(dim=dim, max_rows=max_entries)
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._bytes = 0
        self.evictions = 0

    def _drop(self, key: str) -> _Slot | None:
        slot = self._slots.pop(key, None)
        if slot is not None:
            self._bytes -= len(slot.payload)
            self.index.remove(key)
        return slot

    async def get(self, key: str) -> Entry | None:
        slot = self._slots.get(key)
        if slot is None:
            return None
        if slot.entry.expires <= time.time():
            self._drop(key)
            return None
        self._slots.move_to_end(key)
        e = slot.entry
        return Entry(e.key, e.scope, e.tenant, e.alias, e.route, e.created, e.expires, decode(slot.payload, slot.compressed))

    async def put(self, entry: Entry, vec: np.ndarray | None) -> bool:
        payload, compressed = encode(entry.data)
        if len(payload) > self.max_entry_bytes:
            return False
        self._drop(entry.key)
        stored = Entry(entry.key, entry.scope, entry.tenant, entry.alias, entry.route, entry.created, entry.expires, {})
        self._slots[entry.key] = _Slot(stored, payload, compressed)
        self._bytes += len(payload)
        if vec is not None:
            self.index.add(
                entry.key, entry.scope, vec, expires=entry.expires, created=entry.created,
                tenant=entry.tenant, alias=entry.alias,
            )
        while len(self._slots) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._slots)))
            self.evictions += 1
        return True

    async def nearest(self, scope: str, vec: np.ndarray, threshold: float, *, min_created: float) -> list[Match]:
        return self.index.search(scope, vec, threshold, now=time.time(), min_created=min_created)

    def forget(self, key: str) -> None:
        self.index.remove(key)

    async def invalidate(self, tenant: str | None, alias: str | None) -> int:
        gone = [
            k for k, s in self._slots.items()
            if (tenant is None or s.entry.tenant == tenant) and (alias is None or s.entry.alias == alias)
        ]
        for k in gone:
            self._drop(k)
        self.index.drop(tenant, alias)
        return len(gone)

    def sweep(self) -> int:
        now = time.time()
        gone = [k for k, s in self._slots.items() if s.entry.expires <= now]
        for k in gone:
            self._drop(k)
        return len(gone)

    async def ready(self) -> dict[str, Any]:
        return {
            "ok": True,
            "backend": "memory",
            "state": "up",
            "entries": len(self._slots),
            "bytes": self._bytes,
            "index_rows": len(self.index),
            "evictions": self.evictions,
            "shared": False,
        }

    async def close(self) -> None:
        self._slots.clear()
        self.index.clear()
        self._bytes = 0
