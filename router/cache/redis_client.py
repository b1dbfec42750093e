"""Opening the cache's Redis connections, and naming the server safely in logs.

The store handles failures itself (a time budget per call, a breaker, a
background reconnect), so the client is configured never to wait or retry on
its own.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def open_client(url: str, read_timeout: float | None, pool_size: int, connect_timeout: float) -> Redis:
    # A blocking pool: a burst of requests waits for a connection (within the
    # per-call timeout) instead of failing with "too many connections".
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=None,
        socket_timeout=read_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        decode_responses=False,
    )
    return Redis.from_pool(pool)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
