"""Redis Cluster: three real redis-server nodes joined by
`redis-cli --cluster create`, and a `thinkgate serve` on
`redis+cluster://...`: the cache (a multi-key Lua script), the rate limits (two
keys per window) and the decision log work, each multi-key operation on keys
that share a hash tag."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import redis

from router.cache.testing import free_port
from tests.components import missing
from tests.scale.harness import ADMIN_KEY, CLIENT_KEY, LIMITED_KEY, ROOT, _die_with_parent, gateway_cfg

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free and valid too."""
    import socket

    while True:
        p = free_port()
        if p + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 10000))
            except OSError:
                continue
        return p


def test_the_gateway_runs_on_a_three_node_cluster(tmp_path):
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        missing("redis-server / redis-cli are not installed")
    ports = [cluster_port() for _ in range(3)]
    nodes = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for p in ports:
            d = tmp_path / f"node{p}"
            d.mkdir()
            nodes.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--dir", str(d), "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            ))  # fmt: skip
        for p in ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    redis.Redis(port=p, socket_timeout=1).ping()
                    break
                except redis.RedisError as e:
                    assert time.monotonic() < deadline, f"node {p}: {e}; exited: {[n.poll() for n in nodes]}"
                    time.sleep(0.1)
        made = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert made.returncode == 0, made.stdout + made.stderr
        deadline = time.monotonic() + 20
        while b"cluster_state:ok" not in redis.Redis(port=ports[0]).execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster did not become ok"
            time.sleep(0.2)

        up_port, gw_port = free_port(), free_port()
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
        cfg = gateway_cfg(f"http://127.0.0.1:{up_port}/v1", url, rpm_limited=5)
        cfg["limits"] = {"redis_timeout_ms": 1000}
        (tmp_path / "gw.json").write_text(json.dumps(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "router.upstreams.fake_server", "--port", str(up_port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent))
        log = open(tmp_path / "gw.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "router.cli", "serve", "--config", str(tmp_path / "gw.json"), "--port", str(gw_port)], env=env, stdout=log, stderr=log, preexec_fn=_die_with_parent))
        base = f"http://127.0.0.1:{gw_port}"
        deadline = time.monotonic() + 60
        last = ""
        while True:
            try:
                r = httpx.get(base + "/readyz", headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=2)
                last = r.text
                if r.status_code == 200 and r.json()["checks"].get("cache", {}).get("ok"):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"gateway not ready: {last} {(tmp_path / 'gw.log').read_text()[-3000:]}"
            time.sleep(0.2)

        def chat(text: str, key: str = CLIENT_KEY) -> httpx.Response:
            body = {"model": "auto", "messages": [{"role": "user", "content": text}], "temperature": 0}
            return httpx.post(base + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=15)

        # cache: the put script writes entry + LRU + log in one slot
        ids = []
        for k in range(5):
            first = chat(f"cluster cache {k}")
            assert first.status_code == 200 and first.headers["x-thinkgate-cache"] == "miss"
            ids.append(first.headers["x-thinkgate-request-id"])
            time.sleep(0.2)
            assert chat(f"cluster cache {k}").headers["x-thinkgate-cache"] == "exact"
        # limits: 5 per minute, counted in the cluster
        if time.time() % 60 > 50:
            time.sleep(60 - time.time() % 60 + 0.5)
        codes = [chat(f"limited {i} {time.time()}", LIMITED_KEY).status_code for i in range(8)]
        assert codes == [200] * 5 + [429] * 3
        # the decision log's stream
        r = httpx.get(base + "/dashboard/api/decisions?limit=100", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
        assert set(ids) <= {d["id"] for d in r.json()["data"]}
        # nothing fell back to per-process state, and the keys are spread as tagged
        ready = httpx.get(base + "/readyz", headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=5).json()["checks"]
        assert ready["limits"]["backend"] == "redis" and ready["limits"]["redis_errors"] == 0
        where = {p: [k.decode() for k in redis.Redis(port=p).keys("*")] for p in ports}
        cache_nodes = [p for p, ks in where.items() if any(k.startswith("{thinkgate}:cache:") for k in ks)]
        assert len(cache_nodes) == 1  # one hash tag: one slot
        print(f"\nredis cluster: keys per node {[len(ks) for ks in where.values()]}; cache on one node, limits and log where their tags hash")
        assert "Traceback" not in (tmp_path / "gw.log").read_text()
    finally:
        for p in [*procs, *nodes]:
            p.terminate()
        for p in [*procs, *nodes]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
