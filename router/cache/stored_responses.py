"""The Responses API's response store: what `previous_response_id`,
GET/DELETE /v1/responses/{id} and /input_items read.

One record per stored response (the response object, its input items and the
chat history that continues it), scoped by tenant and kept `ttl_s` seconds:
in-process (bounded, lost on restart, per replica) or on Redis (shared by the
replicas). A Redis failure raises `StoreUnavailable` within `timeout_ms`; the
API layer turns that into a clear error for reads and only logs it for writes,
so serving goes on while Redis is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections import OrderedDict
from typing import Any, Protocol

log = logging.getLogger("thinkgate.responses")


class StoreUnavailable(Exception):
    """The store's backend did not answer (Redis down, hung or refusing)."""


class ResponseStore(Protocol):
    async def put(self, tenant: str, response_id: str, record: dict[str, Any]) -> None: ...
    async def get(self, tenant: str, response_id: str) -> dict[str, Any] | None: ...
    async def delete(self, tenant: str, response_id: str) -> bool: ...
    async def ready(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class MemoryResponseStore:
    """In-process: the oldest records go first past `max_entries`; expired ones
    are dropped when read.

    Records are kept as the objects handed in, not copies: `put` takes ownership
    (the API builds a fresh record per response and never changes it after), and
    what `get` returns is read, never modified. Serialising each record cost more
    than the rest of the Responses translation (~0.15 ms, measured)."""

    def __init__(self, ttl_s: float = 86400.0, max_entries: int = 10_000, clock: Any = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()

    async def put(self, tenant: str, response_id: str, record: dict[str, Any]) -> None:
        key = (tenant, response_id)
        self._data[key] = (self._clock() + self.ttl_s, record)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def get(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        hit = self._data.get((tenant, response_id))
        if hit is None:
            return None
        if hit[0] <= self._clock():
            del self._data[(tenant, response_id)]
            return None
        return hit[1]

    async def delete(self, tenant: str, response_id: str) -> bool:
        hit = self._data.pop((tenant, response_id), None)
        return hit is not None and hit[0] > self._clock()

    async def ready(self) -> dict[str, Any]:
        return {"ok": True, "backend": "memory", "entries": len(self._data)}

    async def close(self) -> None:
        self._data.clear()


class RedisResponseStore:
    """On Redis: one key per record, `SET ... EX ttl`, tenant in the key."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: int = 86400,
        timeout_ms: float = 250.0,
        namespace: str = "thinkgate",
        pool_size: int = 16,
        client: Any = None,
    ) -> None:
        from router.cache.redis_client import open_client, redact

        self.ttl_s = int(ttl_s)
        self.timeout = timeout_ms / 1000
        self.namespace = namespace
        self.where = redact(url)
        self._r = client if client is not None else open_client(url, self.timeout, pool_size, max(self.timeout, 1.0))

    def _key(self, tenant: str, response_id: str) -> str:
        # hex tenant: a tenant name with ':' cannot reach another tenant's keys
        return f"{self.namespace}:responses:{tenant.encode().hex()}:{response_id}"

    async def _run(self, what: str, coro: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await asyncio.wait_for(coro, self.timeout)
        except (RedisError, OSError, TimeoutError) as e:
            raise StoreUnavailable(
                f"the response store (Redis at {self.where}) did not answer the {what}: {type(e).__name__}"
            ) from e

    async def put(self, tenant: str, response_id: str, record: dict[str, Any]) -> None:
        await self._run("write", self._r.set(self._key(tenant, response_id), _encode(record), ex=self.ttl_s))

    async def get(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        raw = await self._run("read", self._r.get(self._key(tenant, response_id)))
        return None if raw is None else _decode(raw)

    async def delete(self, tenant: str, response_id: str) -> bool:
        return bool(await self._run("delete", self._r.delete(self._key(tenant, response_id))))

    async def ready(self) -> dict[str, Any]:
        try:
            await self._run("ping", self._r.ping())
        except StoreUnavailable as e:
            return {"ok": False, "backend": "redis", "error": str(e)}
        return {"ok": True, "backend": "redis"}

    async def close(self) -> None:
        try:
            await self._r.aclose()
        except Exception:  # shutdown goes on whatever Redis does
            log.debug("error while closing the response store", exc_info=True)


def _encode(record: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode(), 1)


def _decode(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(zlib.decompress(raw))
    return out


def build_response_store(
    redis_url: str | None, *, ttl_s: int, max_entries: int, timeout_ms: float, namespace: str
) -> MemoryResponseStore | RedisResponseStore:
    if redis_url:
        return RedisResponseStore(redis_url, ttl_s=ttl_s, timeout_ms=timeout_ms, namespace=namespace)
    return MemoryResponseStore(ttl_s=ttl_s, max_entries=max_entries)
