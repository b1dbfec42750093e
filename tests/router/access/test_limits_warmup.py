"""The limiter opens its Redis connection and loads its script on the first
readiness check, before a load balancer sends it traffic: a cold replica's
first counted request used to miss the 100 ms budget (connect + NOSCRIPT) and
count per process (+1 per replica, measured in tests/scale)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from router.access.limits import Limiter
from router.config import LimitSettings


@pytest.mark.redis
async def test_first_readiness_check_loads_the_script(redis_url):
    admin = aioredis.Redis.from_url(redis_url)
    await admin.script_flush()
    limiter = Limiter(LimitSettings(rpm=5), redis=aioredis.Redis.from_url(redis_url))
    sha = limiter._script.sha  # type: ignore[union-attr]
    assert await admin.script_exists(sha) == [False]
    ready = await limiter.ready()
    assert ready["ok"] and ready["backend"] == "redis"
    assert await admin.script_exists(sha) == [True]
    await limiter.close()
    await admin.aclose()


async def test_readiness_stays_ok_when_redis_is_down(unused_tcp_port):
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{unused_tcp_port}/0", socket_connect_timeout=0.2)
    limiter = Limiter(LimitSettings(rpm=5), redis=client)
    ready = await limiter.ready()
    assert ready["ok"] is True  # limits never make the gateway unready
    await limiter.close()
