"""The semantic-index event log of the Redis cache (`{ns}:cache:log`, a STREAM).

On a server without vector search (plain Redis 7) each replica keeps the
semantic index in process: it replays this log into its `VectorIndex` at start
and then tails it (XREAD BLOCK), so a put on one replica is searchable on all
within milliseconds. The events' format lives here, with the code that reads it:

  op=add m=[key, scope, tenant, alias, created ms, expires ms] v=float32 vector
  op=inv m=[tenant, alias] (null: any)
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from redis.asyncio import Redis

from router.cache.index import VectorIndex

_LOAD_BATCH = 200  # events applied per step while replaying: keeps each event-loop slice short


def add_event(
    key: str, scope: str, tenant: str, alias: str, created_ms: int, expires_ms: int, vector: bytes
) -> list[Any]:
    """An `add` event's fields, flat (as the put script's XADD takes them)."""
    meta = [key, scope, tenant, alias, created_ms, expires_ms]
    return ["op", "add", "m", json.dumps(meta, separators=(",", ":")), "v", vector]


def inv_event(tenant: str | None, alias: str | None) -> dict[str, str]:
    """An `inv` event's fields: drop the rows of a tenant and/or alias (None: any)."""
    return {"op": "inv", "m": json.dumps([tenant, alias])}


class IndexLog:
    """Keeps an in-process `VectorIndex` in step with the event log."""

    def __init__(self, index: VectorIndex, key: str, *, tail_block_ms: int, counters: dict[str, int]) -> None:
        self.index = index
        self.key = key
        self.tail_block_ms = tail_block_ms
        self.counters = counters  # the store's; a replay from the start counts as an index load
        self.last_id: bytes | str = "0-0"
        self.loading = True
        self.generation = 0  # bumped when the index is reset; stale stream reads are dropped
        self._last_sweep = time.monotonic()

    def reset(self) -> None:
        """The data set is new (restart without persistence, flush): replay from the start."""
        self.generation += 1
        self.index.clear()
        self.last_id = "0-0"
        self.loading = True

    async def sync(self, tail: Redis) -> None:
        """Replay (while loading) or tail (blocking) the index event stream."""
        generation = self.generation
        if self.loading:
            self.counters["index_loads"] += int(self.last_id == "0-0")
            reply = await tail.xread({self.key: self.last_id}, count=_LOAD_BATCH)
        else:
            reply = await tail.xread({self.key: self.last_id}, count=1000, block=self.tail_block_ms)
        if generation != self.generation:
            return  # the data set changed while this read was in flight
        events = reply[0][1] if reply else []
        self.apply(events, time.time())
        if events:
            self.last_id = events[-1][0]
        if self.loading and len(events) < _LOAD_BATCH:
            self.loading = False

    def apply(self, events: list[tuple[bytes, dict[bytes, bytes]]], now: float) -> None:
        # event fields: op (add | inv), m (JSON metadata), v (float32 vector, adds only).
        # Few fields on purpose: parsing a reply costs per field, and a new replica
        # replays the whole stream.
        adds: list[tuple[list[Any], bytes]] = []

        def flush() -> None:
            vecs = np.stack([np.frombuffer(v, np.float32) for _, v in adds])
            if vecs.shape[1] == self.index.dim:
                signs = self.index.signs(vecs)  # one matrix product for the whole batch
                for (m, _), v, sg in zip(adds, vecs, signs, strict=True):
                    key, scope, tenant, alias, created_ms, expires_ms = m
                    self.index.add(
                        key, scope, v, expires=expires_ms / 1000.0, created=created_ms / 1000.0,
                        tenant=tenant, alias=alias, signs=sg,
                    )  # fmt: skip
            adds.clear()

        for _, f in events:
            op = f.get(b"op")
            try:
                m = json.loads(f[b"m"])
            except (KeyError, ValueError):
                continue  # not ours, or damaged: skip, never stop tailing
            if op == b"add" and b"v" in f:
                key, created, expires = m[0], m[4] / 1000.0, m[5] / 1000.0
                if expires <= now or self.index.created_of(key) == created:
                    continue  # expired, or this replica's own put, already indexed
                adds.append((m, f[b"v"]))
            elif op == b"inv":
                if adds:
                    flush()
                self.index.drop(m[0], m[1])
        if adds:
            flush()

    def maybe_sweep(self) -> None:
        if time.monotonic() - self._last_sweep > 30.0:
            self._last_sweep = time.monotonic()
            self.index.sweep(time.time())
