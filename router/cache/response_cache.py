"""The response cache the pipeline talks to: policy over a `Store`.

Policy lives here (which requests may be read or stored, keys, TTLs, per-request
controls); storage lives in the stores. Nothing here raises to the pipeline:
a failing store is a miss, and its state shows in `ready()`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from policies.features import conversation_text
from router.cache.keys import is_deterministic, opted_in, request_keys
from router.cache.second_look import MAX_CANDIDATES, TEXT_CHARS, SecondLook
from router.cache.store import Entry, Store
from router.config import CacheSettings
from router.types import ChatRequest

log = logging.getLogger("thinkgate.cache")


@dataclass(frozen=True)
class CacheHit:
    kind: Literal["exact", "semantic"]
    response: dict[str, Any]
    chunks: list[dict[str, Any]] | None  # the original SSE chunk objects, when it was streamed
    similarity: float | None  # semantic hits only
    age_s: float = 0.0
    route: str = ""  # the route that produced the cached answer


def _complete(response: dict[str, Any]) -> bool:
    choices = response.get("choices")
    return bool(choices) and all(isinstance(c, dict) and c.get("finish_reason") for c in choices)


class ResponseCache:
    def __init__(self, settings: CacheSettings, store: Store | None, second_look: SecondLook | None = None) -> None:
        self.settings = settings
        self.store = store  # None: caching disabled
        self.second_look = second_look  # None: a semantic candidate is served on its cosine alone
        self.stats = {"exact": 0, "semantic": 0, "miss": 0, "stored": 0, "store_skipped": 0, "failed": 0}

    @property
    def enabled(self) -> bool:
        return self.store is not None

    @property
    def state(self) -> str:
        """off | up | connecting | down (Redis unreachable: lookups are bypassed)."""
        if self.store is None:
            return "off"
        return str(getattr(self.store, "state", "up"))

    def _cacheable(self, req: ChatRequest) -> bool:
        return not self.settings.deterministic_only or is_deterministic(req) or opted_in(req)

    def readable(self, req: ChatRequest) -> bool:
        cc = req.controls.cache
        return self.enabled and not cc.no_cache and cc.max_age != 0 and self._cacheable(req)

    def storable(self, req: ChatRequest) -> bool:
        return self.enabled and not req.controls.cache.no_store and self._cacheable(req)

    def needs_embedding(self, req: ChatRequest) -> bool:
        return self.settings.semantic and (self.readable(req) or self.storable(req))

    def ttl(self, route: str, alias: str) -> int:
        per = self.settings.ttl_per_route
        if route in per:
            return per[route]
        return per.get(alias, self.settings.ttl_s)

    async def get(self, req: ChatRequest, embedding: np.ndarray | None, *, exact: bool = True) -> CacheHit | None:
        """Exact lookup, then (with an embedding) semantic. `exact=False` skips the
        exact lookup, for a caller that already did it (saves one Redis round trip)."""
        if not self.readable(req):
            return None
        try:
            hit = await self._get(req, embedding, exact)
        except Exception:  # the documented seam: a cache bug must never fail a request
            log.exception("cache: lookup failed")
            self.stats["failed"] += 1
            return None
        self.stats[hit.kind if hit else "miss"] += 1
        return hit

    async def _get(self, req: ChatRequest, embedding: np.ndarray | None, exact: bool) -> CacheHit | None:
        assert self.store is not None
        keys = request_keys(req)
        now = time.time()
        max_age = req.controls.cache.max_age
        min_created = now - max_age if max_age is not None else 0.0
        if self.settings.exact and exact:
            entry = await self.store.get(keys.entry)
            if entry is not None and entry.created >= min_created:
                return self._hit("exact", entry, None, now)
        if not self.settings.semantic or embedding is None:
            return None
        matches = await self.store.nearest(keys.scope, embedding, self.settings.semantic_threshold, min_created=min_created)
        candidates: list[tuple[Entry, float]] = []
        for m in matches:
            if m.key == keys.entry and self.settings.exact and exact:
                continue  # just looked it up: gone or too old
            entry = await self.store.get(m.key)
            if entry is None:
                self.store.forget(m.key)  # expired, evicted or invalidated elsewhere
                continue
            if entry.created >= min_created and entry.scope == keys.scope:
                if self.second_look is None:
                    return self._hit("semantic", entry, m.similarity, now)
                candidates.append((entry, m.similarity))
                if len(candidates) == MAX_CANDIDATES:
                    break
        return await self._confirmed(req, candidates, now) if candidates else None

    async def _confirmed(self, req: ChatRequest, candidates: list[tuple[Entry, float]], now: float) -> CacheHit | None:
        """The best candidate MiniLM also finds the same question (router/cache/second_look.py).
        An entry stored without its text (the check was off then) cannot be checked: not served."""
        assert self.second_look is not None
        checkable = [(e, sim) for e, sim in candidates if isinstance(e.data.get("text"), str)]
        texts = [str(e.data["text"]) for e, _ in checkable]
        sims = await self.second_look.similarities(conversation_text(req.messages), texts)
        for (entry, sim), second in zip(checkable, sims):
            if second >= self.second_look.threshold:
                self.second_look.stats["confirmed"] += 1
                return self._hit("semantic", entry, sim, now)
        self.second_look.stats["refused"] += 1
        return None

    @staticmethod
    def _hit(kind: Literal["exact", "semantic"], entry: Entry, similarity: float | None, now: float) -> CacheHit:
        return CacheHit(
            kind=kind,
            response=entry.data["response"],
            chunks=entry.data.get("chunks"),
            similarity=similarity,
            age_s=max(0.0, now - entry.created),
            route=entry.route,
        )

    async def put(
        self,
        req: ChatRequest,
        embedding: np.ndarray | None,
        response: dict[str, Any],
        chunks: list[dict[str, Any]] | None,
        route: str,
    ) -> None:
        """Store a complete response (and, for a streamed one, its exact chunks)."""
        if not self.storable(req):
            return
        ttl = self.ttl(route, req.alias)
        if ttl <= 0 or not _complete(response):
            self.stats["store_skipped"] += 1
            return
        assert self.store is not None
        try:
            keys = request_keys(req)
            now = time.time()
            entry = Entry(
                key=keys.entry, scope=keys.scope, tenant=keys.tenant, alias=keys.alias, route=route,
                created=now, expires=now + ttl, data={"response": response, "chunks": chunks},
            )  # fmt: skip
            if self.second_look is not None and embedding is not None:
                entry.data["text"] = conversation_text(req.messages)[:TEXT_CHARS]  # what the second look reads
            vec = embedding if self.settings.semantic else None
            ok = await self.store.put(entry, vec)
        except Exception:  # the documented seam, as in get()
            log.exception("cache: store failed")
            self.stats["failed"] += 1
            return
        self.stats["stored" if ok else "store_skipped"] += 1

    async def invalidate(self, tenant: str | None = None, alias: str | None = None) -> int:
        """Admin: drop every entry of a tenant and/or alias (both None: all).
        Raises ThinkgateError (503) when the backend cannot be reached."""
        if self.store is None:
            return 0
        return await self.store.invalidate(tenant, alias)

    async def ready(self) -> dict[str, Any]:
        if self.store is None:
            return {"ok": True, "backend": "off", "state": "off"}
        try:
            info = await self.store.ready()
        except Exception as e:  # readiness must answer
            info = {"ok": False, "state": "error", "last_error": repr(e)}
        info["required"] = False  # a cache outage degrades, it never fails requests
        info["stats"] = dict(self.stats)
        if self.second_look is not None:
            info["second_look"] = dict(self.second_look.stats)
        return info

    async def warmup(self) -> None:
        """Loads the second look's encoder (on its own thread), so the first candidate does not wait for it."""
        if self.second_look is None:
            return
        try:
            await self.second_look.warmup()
        except Exception:  # the check then tries again at the first candidate (and fails to a miss)
            log.exception("cache: could not load the semantic second look's encoder")

    async def close(self) -> None:
        if self.second_look is not None:
            self.second_look.close()
        if self.store is not None:
            await self.store.close()


def build_cache(settings: CacheSettings, dim: int | None = None) -> ResponseCache:
    """`dim`: the width of the vectors the gateway will store (its routing encoder's sentence
    embedding: 256 static, 384 MiniLM); None: settings.dim."""
    if not settings.enabled:
        return ResponseCache(settings, None)
    if dim is not None and dim != settings.dim:
        settings = settings.model_copy(update={"dim": dim})
    second_look = SecondLook(settings.semantic_check_threshold) if settings.semantic and settings.semantic_check else None
    store: Store
    if settings.redis_url:
        from router.cache.redis_store import RedisStore

        store = RedisStore(
            settings.redis_url,
            namespace=settings.namespace,
            timeout_ms=settings.timeout_ms,
            connect_timeout_s=settings.connect_timeout_ms / 1000.0,
            max_entries=settings.max_entries,
            max_entry_bytes=settings.max_entry_bytes,
            dim=settings.dim,
            vector_search=settings.vector_search,
            max_connections=settings.max_connections,
        )
    else:
        from router.cache.store import MemoryStore

        store = MemoryStore(
            max_entries=settings.max_entries,
            max_bytes=settings.max_bytes,
            max_entry_bytes=settings.max_entry_bytes,
            dim=settings.dim,
        )
    return ResponseCache(settings, store, second_look)
