"""Where an agent loop's state lives between its turns (routing.agent.in_loop: keep):
the route and model of the turn that opened it (policies.agent_turn.LoopState).

The same two homes as a conversation's route (router/cache/conversations.py):
Redis when one is configured, so the turns of one loop agree on every replica;
a bounded in-process LRU otherwise. A Redis failure never fails a request: the
turn is routed on its own, and Redis is left alone for a while.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Protocol

from policies.agent_turn import LoopState
from router.cache.conversations import _ROUTES, RedisRoutes
from router.config import RoutingSettings


class LoopStore(Protocol):
    async def get(self, key: str) -> LoopState | None: ...
    async def put(self, key: str, state: LoopState) -> None: ...
    async def close(self) -> None: ...


def _decode(raw: Any) -> LoopState | None:
    """A stored state, or None for anything this version cannot read."""
    try:
        data = json.loads(raw)
        route, model = data["route"], data["model"]
    except (TypeError, ValueError, KeyError):
        return None
    if route not in _ROUTES or not isinstance(model, str):
        return None
    return LoopState(route, model)


def _encode(state: LoopState) -> str:
    return json.dumps({"route": state.route, "model": state.model}, separators=(",", ":"))


class MemoryLoops:
    """Bounded LRU with an idle TTL: one process's loops."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Any = None) -> None:
        import time

        self.ttl_s, self.max_entries = ttl_s, max_entries
        self.clock = clock or time.monotonic
        self._data: OrderedDict[str, tuple[LoopState, float]] = OrderedDict()

    async def get(self, key: str) -> LoopState | None:
        item = self._data.get(key)
        if item is None:
            return None
        if self.clock() >= item[1]:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[0]

    async def put(self, key: str, state: LoopState) -> None:
        self._data[key] = (state, self.clock() + self.ttl_s)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


class RedisLoops(RedisRoutes):
    """One JSON string per loop, refreshed on every turn (an idle TTL); the
    conversation store's connection handling and back-off."""

    def key(self, cid: str) -> str:
        return f"{self.namespace}:loop:{{{cid}}}:state"

    async def get(self, cid: str) -> LoopState | None:  # type: ignore[override]
        raw = await self._call(self._redis.get(self.key(cid)))
        return None if raw is None else _decode(raw)

    async def put(self, cid: str, state: LoopState) -> None:  # type: ignore[override]
        await self._call(self._redis.set(self.key(cid), _encode(state), ex=self.ttl_s))


def build_loop_store(routing: RoutingSettings, cache_redis_url: str | None) -> LoopStore | None:
    if routing.agent.in_loop == "independent":
        return None
    url = routing.redis_url or cache_redis_url
    if url:
        return RedisLoops(url, routing.ttl_s, routing.timeout_ms, routing.namespace)
    return MemoryLoops(routing.ttl_s, routing.max_conversations)
