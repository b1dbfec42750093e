"""Where a conversation's route lives between turns (routing.conversation).

Redis when one is configured, so every replica behind a load balancer sees the
same route; a bounded in-process LRU with a TTL otherwise. A Redis failure
never fails a request: the turn is routed on its own (get -> None, put
dropped) and Redis is left alone for `retry_s` so a dead server costs one
timeout, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

from router.config import RoutingSettings
from router.types import Route

log = logging.getLogger("thinkgate.conversations")

_ROUTES: tuple[Route, ...] = ("fast", "reasoning")


class RouteStore(Protocol):
    async def get(self, cid: str) -> Route | None: ...
    async def put(self, cid: str, route: Route) -> None: ...
    async def close(self) -> None: ...


class MemoryRoutes:
    """Bounded LRU with a TTL: one process's conversations (the embedded default)."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Any = time.monotonic) -> None:
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._data: OrderedDict[str, tuple[Route, float]] = OrderedDict()

    async def get(self, cid: str) -> Route | None:
        item = self._data.get(cid)
        if item is None:
            return None
        route, expires = item
        if self.clock() >= expires:
            del self._data[cid]
            return None
        self._data.move_to_end(cid)
        return route

    async def put(self, cid: str, route: Route) -> None:
        self._data[cid] = (route, self.clock() + self.ttl_s)
        self._data.move_to_end(cid)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


class RedisRoutes:
    """One string key per conversation, refreshed on every turn (an idle TTL).
    The id sits in a {hash tag}, so on a Redis Cluster a conversation's keys
    (today one, tomorrow more) land in one slot."""

    def __init__(self, url: str, ttl_s: int, timeout_ms: float, namespace: str, retry_s: float = 2.0) -> None:
        from router.cache.redis_client import open_client

        self.ttl_s, self.timeout = ttl_s, timeout_ms / 1000
        self.namespace, self.retry_s = namespace, retry_s
        self._redis = open_client(url, read_timeout=self.timeout, pool_size=32, connect_timeout=self.timeout)
        self._down_until = 0.0

    def key(self, cid: str) -> str:
        return f"{self.namespace}:conv:{{{cid}}}:route"

    async def get(self, cid: str) -> Route | None:
        raw = await self._call(self._redis.get(self.key(cid)))
        route = raw.decode() if isinstance(raw, bytes) else raw
        return route if route in _ROUTES else None

    async def put(self, cid: str, route: Route) -> None:
        await self._call(self._redis.set(self.key(cid), route, ex=self.ttl_s))

    async def _call(self, coro: Any) -> Any:
        if time.monotonic() < self._down_until:
            coro.close()
            return None
        try:
            return await asyncio.wait_for(coro, self.timeout)
        except Exception as e:  # a failing Redis degrades routing to per-turn, never fails the request
            self._down_until = time.monotonic() + self.retry_s
            log.warning("conversation store unavailable (%s); routing turns on their own for %.0fs", type(e).__name__, self.retry_s)
            return None

    async def close(self) -> None:
        try:
            await self._redis.aclose()
        except Exception:  # shutting down; a dead connection does not matter now
            log.debug("error closing the conversation store", exc_info=True)


def build_route_store(routing: RoutingSettings, cache_redis_url: str | None) -> RouteStore | None:
    if routing.conversation == "independent":
        return None
    url = routing.redis_url or cache_redis_url
    if url:
        return RedisRoutes(url, routing.ttl_s, routing.timeout_ms, routing.namespace)
    return MemoryRoutes(routing.ttl_s, routing.max_conversations)
