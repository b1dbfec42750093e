"""Redis that fails over: a real master + replica + three sentinels
(redis-server processes on loopback), a `thinkgate serve` on
`redis+sentinel://...`, and the master SIGKILLed under load. Requests keep
succeeding (the cache is bypassed while Redis fails over), and afterwards the
cache and the rate limits work on the promoted master without a restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from router.cache.redis_client import parse_sentinel
from router.cache.testing import RedisServer, free_port
from tests.components import missing
from tests.scale.harness import CLIENT_KEY, LIMITED_KEY, ROOT, Load, _die_with_parent, gateway_cfg

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(240)]


def test_sentinel_urls_parse():
    s = parse_sentinel("redis+sentinel://:pw@10.0.0.1:26379,[::1]:26380/mymaster/2")
    assert s is not None and s.sentinels == [("10.0.0.1", 26379), ("::1", 26380)] and s.service == "mymaster"
    assert s.db == 2 and s.password == "pw"
    assert parse_sentinel("redis://h:6379/0") is None
    for bad in ("redis+sentinel://h/mymaster", "redis+sentinel://h:1", "redis+sentinel://h:1/m/x"):
        with pytest.raises(ValueError):
            parse_sentinel(bad)


def sentinel_proc(port: int, master_port: int, workdir: Path) -> subprocess.Popen[bytes]:
    conf = workdir / f"sentinel-{port}.conf"  # sentinels rewrite their config: one file each
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor tg 127.0.0.1 {master_port} 2\n"
        "sentinel down-after-milliseconds tg 1000\nsentinel failover-timeout tg 5000\nsentinel parallel-syncs tg 1\n"
    )
    return subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )  # fmt: skip


def master_port(sentinel_port: int) -> int:
    addr = redis.Redis(port=sentinel_port, socket_timeout=1).sentinel_get_master_addr_by_name("tg")
    return int(addr[1])


def test_the_master_killed_under_load_fails_over_without_a_restart(tmp_path):
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed")
    master = RedisServer().start()
    replica = RedisServer()
    replica.start()
    redis.Redis(port=replica.port).replicaof("127.0.0.1", master.port)
    sentinel_ports = [free_port() for _ in range(3)]
    sentinels = [sentinel_proc(p, master.port, tmp_path) for p in sentinel_ports]
    up_port, gw_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # the sentinels know the master, the replica and each other
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                info = redis.Redis(port=sentinel_ports[0], socket_timeout=1).sentinel_master("tg")
                if int(info["num-slaves"]) >= 1 and int(info["num-other-sentinels"]) >= 2:
                    break
            except (redis.RedisError, KeyError):
                pass
            time.sleep(0.2)
        else:
            pytest.fail("sentinels did not see the replica and each other")

        url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in sentinel_ports) + "/tg/0"
        cfg = gateway_cfg(f"http://127.0.0.1:{up_port}/v1", url, rpm_limited=1000)
        cfg["limits"] = {"redis_timeout_ms": 1000}
        (tmp_path / "gw.json").write_text(json.dumps(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "router.upstreams.fake_server", "--port", str(up_port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent))
        log = open(tmp_path / "gw.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "router.cli", "serve", "--config", str(tmp_path / "gw.json"), "--port", str(gw_port)], env=env, stdout=log, stderr=log, preexec_fn=_die_with_parent))
        base = f"http://127.0.0.1:{gw_port}"
        auth = {"authorization": f"Bearer {CLIENT_KEY}"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = httpx.get(base + "/readyz", headers=auth, timeout=2)
                if r.status_code == 200 and r.json()["checks"].get("cache", {}).get("ok"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"gateway not ready: {(tmp_path / 'gw.log').read_text()[-2000:]}")

        def chat(text: str, key: str = CLIENT_KEY) -> httpx.Response:
            body = {"model": "auto", "messages": [{"role": "user", "content": text}], "temperature": 0}
            return httpx.post(base + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=15)

        assert chat("before failover").headers["x-thinkgate-cache"] == "miss"
        time.sleep(0.3)
        assert chat("before failover").headers["x-thinkgate-cache"] == "exact"  # the cache is on the master

        old = master.port
        with Load(base, concurrency=4) as load:
            time.sleep(1.0)
            master.kill()  # SIGKILL: no persistence, the replica holds the data
            t_kill = time.monotonic()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and master_port(sentinel_ports[0]) == old:
                time.sleep(0.2)
            failover_s = time.monotonic() - t_kill
            assert master_port(sentinel_ports[0]) == replica.port, "the sentinels did not promote the replica"
            time.sleep(3.0)  # keep the load on while the gateway finds the new master
        print(f"\nsentinel failover under load: sent {load.sent}, ok {load.ok}, failed {load.failed} {load.failures[:3]}; promoted after {failover_s:.1f}s")
        assert load.failed == 0, load.failures[:10]

        # cache and limits resume on the promoted master, same process
        def cache_back() -> bool:
            text = f"after failover {time.time()}"
            if chat(text).status_code != 200:
                return False
            time.sleep(0.3)
            return chat(text).headers["x-thinkgate-cache"] == "exact"

        deadline = time.monotonic() + 30
        while not cache_back():
            assert time.monotonic() < deadline, "the cache did not come back on the new master"
            time.sleep(0.5)
        new = redis.Redis(port=replica.port)
        assert new.role()[0] == b"master"
        r = chat(f"limited {time.time()}", LIMITED_KEY)
        assert r.status_code == 200 and r.headers["x-ratelimit-limit-requests"] == "1000"
        deadline = time.monotonic() + 15
        while not list(new.scan_iter("thinkgate:rl:*")):  # the window is counted on the new master
            assert time.monotonic() < deadline, "rate limits are not counted on the new master"
            chat(f"limited {time.time()}", LIMITED_KEY)
            time.sleep(0.5)
        assert chat("before failover").headers["x-thinkgate-cache"] == "exact"  # replicated before the kill
    finally:
        for p in [*procs, *sentinels]:
            p.terminate()
        for p in [*procs, *sentinels]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        master.stop()
        replica.stop()
