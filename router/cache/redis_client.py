"""Opening the cache's Redis connections, and naming the server safely in logs.

The store handles failures itself (a time budget per call, a breaker, a
background reconnect), so the client is configured never to wait or retry on
its own.

`redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]`
names a Sentinel-managed master: the client asks the sentinels for the current
master on every new connection, so after a failover a reconnect (which the
store, the limiter and the decision log all do after an error) reaches the new
master without a restart. The password is the data nodes'; sentinels are
asked without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelURL:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel(url: str) -> SentinelURL | None:
    """The parts of a redis+sentinel:// URL; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return None
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for hp in hosts.split(","):
        host, _, port = hp.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{redact(url)}: each sentinel needs host:port")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"{redact(url)}: expected redis+sentinel://host:port[,host:port]/service_name[/db]")
    return SentinelURL(
        sentinels, path[0], int(path[1]) if len(path) == 2 else 0,
        unquote(parts.username) if parts.username else None, unquote(parts.password) if parts.password else None,
    )  # fmt: skip


CLUSTER_SCHEME = "redis+cluster"


def is_cluster(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme == CLUSTER_SCHEME  # type: ignore[arg-type]


def connect(url: str, **kwargs: Any) -> Any:
    """`Redis.from_url(url, **kwargs)`; the Sentinel master for a redis+sentinel:// URL;
    a cluster client for `redis+cluster://[user:password@]host:port[,host:port...]`
    (any nodes: the client learns the slots). Keys used together in one command or
    script must share a hash tag there (router.cache.redis_store and access.limits do)."""
    if is_cluster(url):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        parts = urlsplit(url)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        nodes = []
        for hp in hosts.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{redact(url)}: each cluster node needs host:port")
            nodes.append(ClusterNode(host.strip("[]"), int(port)))
        user, _, password = userinfo.partition(":")
        keep = ("socket_timeout", "socket_connect_timeout", "max_connections", "decode_responses")
        return RedisCluster(
            startup_nodes=nodes, username=unquote(user) or None, password=unquote(password) or None,
            **{k: v for k, v in kwargs.items() if k in keep},
        )  # fmt: skip
    sentinel = parse_sentinel(url)
    if sentinel is None:
        return Redis.from_url(url, **kwargs)
    from redis.asyncio.sentinel import Sentinel

    timeouts = {k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout")}
    node = {**kwargs, "db": sentinel.db, "username": sentinel.username, "password": sentinel.password}
    return Sentinel(sentinel.sentinels, sentinel_kwargs=timeouts, **node).master_for(sentinel.service)


def open_client(url: str, read_timeout: float | None, pool_size: int, connect_timeout: float) -> Redis:
    if parse_sentinel(url) is not None or is_cluster(url):
        # a Sentinel pool finds the master per connection; it has no blocking variant
        return connect(
            url, max_connections=pool_size, socket_timeout=read_timeout, socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=0, decode_responses=False,
        )  # fmt: skip
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
    if "@" not in parts.netloc:
        return url
    userinfo, hosts = parts.netloc.rsplit("@", 1)  # hosts may be a sentinel list: not parsed as one host:port
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{user}:***@{hosts}", parts.path, parts.query, parts.fragment))
