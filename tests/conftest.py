"""Shared fixtures.

Real Redis: `redis_server` starts one throwaway `redis-server` per test session
(loopback, free port, no persistence) and skips when the binary is missing
(.ci/run installs it). `redis_url` gives each test an empty, running server;
tests may `redis_server.kill()`, `.restart()`, `.pause()` / `.resume()` it —
the next test gets it back alive.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from router.cache.testing import RedisServer, flushall
from tests.components import missing


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    if redis_server.proc is not None and redis_server.proc.poll() is None:
        redis_server.resume()  # in case a test left it paused
    redis_server.start()
    flushall(redis_server.port)
    yield redis_server.url
    if redis_server.running:
        redis_server.resume()
