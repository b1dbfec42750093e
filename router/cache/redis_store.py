"""Redis backend of the response cache, shared by every gateway replica.

Layout under `{ns}:cache:` —
  e:{tenant hex}:{alias hex}:{digest}  HASH  p payload, z compressed, c created ms,
                                       x expires ms, r route, s scope (+ v vector with FT)
  lru    ZSET  entry key -> expiry ms; bounds the entry count (soonest-to-expire out first)
  log    STREAM of semantic-index events: op=add m=[key, scope, tenant, alias, created, expires] v=vector,
         op=inv m=[tenant, alias] (null: any)
  epoch  STRING a token that changes when the data set is new (restart without persistence, flush)
  idx    the FT index, only on servers with vector search

Without server-side vector search (plain Redis 7), each replica replays `log`
into its in-process index at start and then tails it (XREAD BLOCK), so a put on
one replica is searchable on all within milliseconds (router/cache/index_log.py).
An index row whose entry has expired, been evicted or invalidated is dropped the
first time it matches.

Every request-path command runs under `timeout_ms`. The first failure marks the
store down; while down, get/put/search return at once (a miss) and a background
task reconnects with exponential backoff, re-checking the epoch (a restarted,
empty Redis means the local index is reset and replayed).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from router.cache import vsearch
from router.cache.index import Match, VectorIndex
from router.cache.index_log import IndexLog, add_event, inv_event
from router.cache.redis_client import is_cluster, open_client, redact
from router.cache.store import Entry, decode, encode
from router.errors import ThinkgateError

log = logging.getLogger("thinkgate.cache")

T = TypeVar("T")
_FAILED: Any = object()
_FAILURES = (RedisError, OSError, TimeoutError)

# KEYS: entry, lru, log.  ARGV: expires_ms now_ms max_entries n_hash_args hash-args... [log-args...]
_PUT = """
local exp = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local maxn = tonumber(ARGV[3])
local nh = tonumber(ARGV[4])
local h = {}
for i = 5, 4 + nh do h[#h + 1] = ARGV[i] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(h))
redis.call('PEXPIREAT', KEYS[1], exp)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], exp, KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - maxn
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do redis.call('UNLINK', old[i]) end
end
if #ARGV > 4 + nh then
  local x = {}
  for i = 5 + nh, #ARGV do x[#x + 1] = ARGV[i] end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxn, '*', unpack(x))
end
return over
"""


def _glob_escape(s: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in s)


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "thinkgate",
        timeout_ms: float = 20.0,
        max_entries: int = 100_000,
        max_entry_bytes: int = 2 * 1024 * 1024,
        dim: int = 384,
        vector_search: str = "auto",  # auto | local | redis
        connect_timeout_s: float = 1.0,
        admin_timeout_s: float = 10.0,
        tail_block_ms: int = 1000,
        max_connections: int = 64,
        timeouts_to_trip: int = 3,
    ) -> None:
        self.url = url
        self.timeout = timeout_ms / 1000.0
        self.connect_timeout = connect_timeout_s
        self.admin_timeout = admin_timeout_s
        self.max_entries = max_entries
        self.max_entry_bytes = max_entry_bytes
        self.dim = dim
        self.vector_search = vector_search
        self.tail_block_ms = tail_block_ms
        self.max_connections = max_connections
        self.timeouts_to_trip = timeouts_to_trip
        self._timeouts_in_row = 0
        # On Redis Cluster the put script's keys (entry, LRU set, index log) must
        # share a slot: one hash tag for the namespace (the cache then lives on one shard)
        base = f"{{{namespace}}}:cache:" if is_cluster(url) else f"{namespace}:cache:"
        self.prefix = base + "e:"
        self.k_lru, self.k_log, self.k_epoch, self.k_idx = base + "lru", base + "log", base + "epoch", base + "idx"
        self.index = VectorIndex(dim=dim, max_rows=max_entries)
        self.state = "idle"  # idle | connecting | up | down | closed
        self.last_error: str | None = None
        self.down_since: float | None = None
        self.counters = {
            "errors": 0, "timeouts": 0, "trips": 0, "bypassed": 0, "reconnects": 0, "evicted": 0, "index_loads": 0,
        }  # fmt: skip
        self._down_total = 0.0  # seconds spent down, closed outages
        self._ft = False
        self._epoch: bytes | None = None
        self._index_log = IndexLog(self.index, self.k_log, tail_block_ms=tail_block_ms, counters=self.counters)
        self._r: Redis | None = None
        self._tail: Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._first: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._put_script: Any = None

    # -- connection state --------------------------------------------------------

    def _start(self) -> None:
        if not self._tasks and self.state != "closed":
            self.state = "connecting"
            self._first = asyncio.Event()
            self._wake = asyncio.Event()
            self._r = open_client(self.url, max(0.05, 6 * self.timeout), self.max_connections, self.connect_timeout)
            tail_read = self.tail_block_ms / 1000.0 + self.connect_timeout + 1.0
            self._tail = open_client(self.url, tail_read, 2, self.connect_timeout)
            self._put_script = self._r.register_script(_PUT)
            self._tasks = [
                asyncio.create_task(self._supervise(), name="thinkgate-cache-redis-health"),
                asyncio.create_task(self._tail_loop(), name="thinkgate-cache-redis-tail"),
            ]

    async def _usable(self, wait: float) -> bool:
        self._start()
        if self.state == "connecting" and self._first is not None:
            try:
                await asyncio.wait_for(self._first.wait(), wait)
            except TimeoutError:
                return False
        return self.state == "up"

    def _down(self, err: BaseException) -> None:
        if isinstance(err, ResponseError):  # the server answered: not an outage
            self.counters["errors"] += 1
            self.last_error = f"{type(err).__name__}: {err}"
            log.warning("cache: redis error %s", err)
            return
        self.last_error = f"{type(err).__name__}: {err}"
        if isinstance(err, TimeoutError) or "Timeout" in type(err).__name__:
            # one slow answer (a busy event loop, a GC pause) is not an outage
            self.counters["timeouts"] += 1
            self._timeouts_in_row += 1
            if self._timeouts_in_row < self.timeouts_to_trip:
                return
        else:
            self.counters["errors"] += 1
        if self.state == "up":
            log.warning("cache: redis unavailable (%s); bypassing the cache until it is back", self.last_error)
            self.down_since = time.time()
            self.counters["trips"] += 1
            self.state = "down"
            if self._wake is not None:
                self._wake.set()

    async def _call(self, fn: Callable[[Redis], Awaitable[T]], budget: float | None = None) -> T:
        """One request-path operation under the time budget; `_FAILED` on any failure.
        Only the very first calls wait for the first connection (connect timeout)."""
        if not await self._usable(self.connect_timeout):
            self.counters["bypassed"] += 1
            return _FAILED
        assert self._r is not None
        try:
            async with asyncio.timeout(budget or self.timeout):
                out = await fn(self._r)
        except _FAILURES as e:
            self._down(e)
            return _FAILED
        self._timeouts_in_row = 0
        return out

    async def _supervise(self) -> None:
        """Health: (re)connect with backoff whenever the store is not up."""
        backoff = 0.05
        assert self._first is not None and self._wake is not None
        while self.state != "closed":
            if self.state == "up":
                await self._wait_wake(1.0)
                continue
            try:
                await self._connect()
            except _FAILURES as e:
                self.last_error = f"{type(e).__name__}: {e}"
                if self.state == "connecting":
                    log.warning("cache: cannot reach redis at %s (%s); retrying", redact(self.url), self.last_error)
                    self.down_since = time.time()
                self.state = "down"
                self._first.set()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 2.0)
                continue
            if self.state == "down":
                self.counters["reconnects"] += 1
                log.info("cache: redis is back at %s", redact(self.url))
            if self.down_since is not None:
                self._down_total += time.time() - self.down_since
            backoff = 0.05
            self._timeouts_in_row = 0
            self.down_since = None
            self._wake.clear()
            self.state = "up"
            self._first.set()

    async def _tail_loop(self) -> None:
        """Keep the in-process index in step with the event stream (no FT only)."""
        while self.state != "closed":
            if self._ft or self.state != "up":
                await asyncio.sleep(0.05)
                continue
            assert self._tail is not None
            try:
                await self._index_log.sync(self._tail)
                self._index_log.maybe_sweep()
            except _FAILURES as e:
                self._down(e)
                await asyncio.sleep(0.05 if self.state != "up" else 0.5)  # never spin on a server error

    async def _wait_wake(self, timeout: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _connect(self) -> None:
        assert self._r is not None and self._tail is not None
        async with asyncio.timeout(self.connect_timeout):
            # sockets from before an outage are dead: start from fresh ones (a
            # cluster client has a pool per node and refreshes its topology itself)
            for client in (self._r, self._tail):
                pool = getattr(client, "connection_pool", None)
                if pool is not None:
                    await pool.disconnect(inuse_connections=False)
            await self._r.ping()
            await self._r.set(self.k_epoch, uuid.uuid4().hex, nx=True)
            epoch = await self._r.get(self.k_epoch)
            # on a cluster an FT index would span shards: the local index is used
            if self.vector_search in ("auto", "redis") and not is_cluster(self.url):
                self._ft = await vsearch.detect(self._r)
                if not self._ft and self.vector_search == "redis" and self._epoch is None:
                    log.warning("cache: vector_search=redis but the server has no FT.* commands; using the local index")
            if self._ft:
                try:
                    await self._r.execute_command("FT.INFO", self.k_idx)
                except ResponseError:
                    await self._r.execute_command(*vsearch.create_args(self.k_idx, self.prefix, self.dim))
        if epoch != self._epoch:
            if self._epoch is not None:
                log.info("cache: redis data set changed (restart or flush); reloading the semantic index")
            self._epoch = epoch
            self._index_log.reset()

    # -- the Store interface -------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        fields = (b"p", b"z", b"c", b"x", b"r", b"s")
        reply = await self._call(lambda r: r.hmget(self.prefix + key, fields))
        if reply is _FAILED or reply[0] is None:
            return None
        p, z, c, x, route, scope = reply
        tenant_hex, alias_hex, _ = key.split(":", 2)
        return Entry(
            key=key,
            scope=scope.decode() if scope else "",
            tenant=bytes.fromhex(tenant_hex).decode(),
            alias=bytes.fromhex(alias_hex).decode(),
            route=route.decode() if route else "",
            created=int(c) / 1000.0,
            expires=int(x) / 1000.0,
            data=decode(p, z == b"1"),
        )

    async def put(self, entry: Entry, vec: np.ndarray | None) -> bool:
        payload, compressed = encode(entry.data)
        if len(payload) > self.max_entry_bytes:
            return False
        created_ms, expires_ms = int(entry.created * 1000), int(entry.expires * 1000)
        hash_args: list[Any] = [
            "p", payload, "z", "1" if compressed else "0", "c", created_ms, "x", expires_ms,
            "r", entry.route, "s", entry.scope,
        ]  # fmt: skip
        log_args: list[Any] = []
        blob = None
        if vec is not None:
            v = np.asarray(vec, np.float32).reshape(-1)
            norm = float(np.linalg.norm(v))
            if v.shape[0] == self.dim and norm > 0:
                blob = (v / norm).tobytes()
        if blob is not None and self._ft:
            hash_args += ["v", blob]
        elif blob is not None:
            log_args = add_event(entry.key, entry.scope, entry.tenant, entry.alias, created_ms, expires_ms, blob)
        args = [expires_ms, int(time.time() * 1000), self.max_entries, len(hash_args), *hash_args, *log_args]
        keys = [self.prefix + entry.key, self.k_lru, self.k_log]
        # writes happen after the reply is sent: a longer budget costs no client latency
        over = await self._call(lambda r: self._put_script(keys=keys, args=args, client=r), 5 * self.timeout)
        if over is _FAILED:
            return False
        if over and int(over) > 0:
            self.counters["evicted"] += int(over)
        if log_args:  # searchable here at once; other replicas see it through the stream
            assert blob is not None
            self.index.add(
                entry.key, entry.scope, np.frombuffer(blob, np.float32), expires=entry.expires,
                created=created_ms / 1000.0, tenant=entry.tenant, alias=entry.alias,
            )
        return True

    async def nearest(self, scope: str, vec: np.ndarray, threshold: float, *, min_created: float) -> list[Match]:
        if not self._ft:
            if self.state != "up":
                return []
            return self.index.search(scope, vec, threshold, now=time.time(), min_created=min_created)
        v = np.asarray(vec, np.float32).reshape(-1)
        v = v / max(float(np.linalg.norm(v)), 1e-12)
        args = vsearch.search_args(self.k_idx, scope, v, 3, int(min_created * 1000))
        reply = await self._call(lambda r: r.execute_command(*args))
        if reply is _FAILED:
            return []
        n = len(self.prefix)
        return [Match(k[n:], s, 0.0) for k, s in vsearch.parse_search(reply) if s >= threshold and k.startswith(self.prefix)]

    def forget(self, key: str) -> None:
        self.index.remove(key)

    async def invalidate(self, tenant: str | None, alias: str | None) -> int:
        if not await self._usable(self.connect_timeout):
            raise ThinkgateError("the cache's redis is unavailable", status=503, code="cache_unavailable")
        assert self._r is not None
        th = tenant.encode().hex() if tenant is not None else "*"
        ah = alias.encode().hex() if alias is not None else "*"
        pattern = f"{_glob_escape(self.prefix)}{th}:{ah}:*"
        removed = 0
        try:
            async with asyncio.timeout(self.admin_timeout):
                batch: list[bytes] = []
                async for member, _ in self._r.zscan_iter(self.k_lru, match=pattern, count=1000):
                    batch.append(member)
                    if len(batch) >= 500:
                        removed += await self._unlink(batch)
                        batch = []
                if batch:
                    removed += await self._unlink(batch)
                if not self._ft:
                    await self._r.xadd(self.k_log, inv_event(tenant, alias), maxlen=self.max_entries, approximate=True)
        except _FAILURES as e:
            self._down(e)
            raise ThinkgateError(f"cache invalidation failed: {e}", status=503, code="cache_unavailable") from None
        self.index.drop(tenant, alias)
        return removed

    async def _unlink(self, keys: list[bytes]) -> int:
        assert self._r is not None
        async with self._r.pipeline(transaction=False) as p:
            p.unlink(*keys)
            p.zrem(self.k_lru, *keys)
            gone, _ = await p.execute()
        return int(gone)

    async def ready(self) -> dict[str, Any]:
        await self._usable(self.connect_timeout)
        return {
            "ok": self.state == "up",
            "backend": "redis",
            "state": self.state,
            "url": redact(self.url),
            "vector_search": "redis" if self._ft else "local",
            "index_rows": len(self.index),
            "index_scopes": self.index.scopes,
            "index_loading": self._index_log.loading and not self._ft,
            "down_since": self.down_since,
            "down_s_total": round(self._down_total + (time.time() - self.down_since if self.down_since else 0.0), 3),
            "last_error": self.last_error,
            "shared": True,
            **self.counters,
        }

    async def close(self) -> None:
        self.state = "closed"
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, *_FAILURES):
                pass
        self._tasks = []
        for client in (self._r, self._tail):
            if client is not None:
                try:
                    await client.aclose()
                except _FAILURES:
                    pass
        self._r = self._tail = None
        self.index.clear()
