"""N `thinkgate serve` replicas on one real Redis behind a real HAProxy, on
loopback, for tests/scale/ and bench/replicas.py.

- the upstream is the packaged fake server (router.upstreams.fake_server) in
  its own process, so a request costs the gateway's work and not a model's;
- every replica is the shipped command with the same config (cache, decision
  log and rate limits in Redis) and keys from THINKGATE_API_KEYS;
- HAProxy health-checks `/readyz` with a probe key, and retries a request that
  found no server or an empty response on another replica (`retry-on`,
  `option redispatch`), which is what makes a SIGTERM'd or SIGKILL'd replica
  invisible to clients.

    with Cluster(redis_url, tmp_path) as c:
        httpx.post(c.lb + "/v1/chat/completions", headers=c.auth(), json=...)
        c.stop_replica(0, signal.SIGTERM); c.start_replica(0); c.wait_lb_up(0)
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from router.cache.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT_KEY = "sk-scale-client-0123456789"
ADMIN_KEY = "sk-scale-admin-0123456789"
PROBE_KEY = "sk-scale-probe-0123456789"
LIMITED_KEY = "sk-scale-limited-0123456789"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def haproxy_cfg(bind_port: int, stats_port: int, replicas: list[int], probe_key: str) -> str:
    servers = "\n".join(f"    server r{i} 127.0.0.1:{p} check" for i, p in enumerate(replicas))
    return f"""
global
    maxconn 4096
    log stderr format raw local0 info


defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout queue 10s
    # a request that reached no replica, or whose replica closed without an
    # answer (SIGKILL, or a keep-alive connection closed by a draining replica),
    # goes again to another one: the gateway is stateless, so this is safe
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

frontend gateway
    bind 127.0.0.1:{bind_port}
    default_backend replicas

backend replicas
    balance roundrobin
    # L7 retries replay the request from HAProxy's buffer: wait for the whole
    # body before picking a replica, or a request cut by a dying replica is
    # answered 502 (measured: 1-3 per SIGKILL) instead of being sent again
    option http-buffer-request
    option httpchk
    http-check send meth GET uri /readyz hdr authorization "Bearer {probe_key}"
    http-check expect status 200
    http-response set-header x-served-by %s
    timeout check 2s
    default-server inter 300ms fastinter 200ms downinter 300ms fall 2 rise 2
{servers}

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


def gateway_cfg(api_base: str, redis_url: str, rpm_limited: int) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "drain_s": 10, "log_level": "warning"},
        "models": {
            "fast": {"provider": "openai", "model": "fake-model", "api_base": api_base, "timeout": 10},
            "reasoning": {"provider": "openai", "model": "fake-model", "api_base": api_base, "reasoning": True, "timeout": 10},
        },
        "routes": {"auto": {"fallback": True}},
        "classifier": {"enabled": False},
        "selfref": {"enabled": False},
        # a conversation's route lives in the cache's Redis, shared by the replicas
        "routing": {"conversation": "monotone"},
        "cache": {"redis_url": redis_url},
        "decisions": {"redis_url": redis_url},
        # a Redis reply slower than this is counted per replica for a second (the
        # designed degradation); 1 s instead of 100 ms keeps a loaded test box
        # (load average ~19 on 2 cores, measured) from turning that on
        "limits": {"redis_timeout_ms": 1000},
        "auth": {
            "keys": [
                {"key": CLIENT_KEY, "tenant": "scale"},
                {"key": ADMIN_KEY, "tenant": "scale", "admin": True},
                {"key": PROBE_KEY, "tenant": "probe"},
                {"key": LIMITED_KEY, "tenant": "scale", "rpm": rpm_limited},
            ]
        },
    }


class Load:
    """Closed-loop load through one URL on its own thread: `concurrency` workers
    send chat requests until `stop()`; every outcome is counted."""

    def __init__(self, url: str, *, concurrency: int = 8, key: str = CLIENT_KEY, timeout: float = 30.0) -> None:
        import threading

        self.url = url
        self.concurrency = concurrency
        self.key = key
        self.timeout = timeout
        self.sent = self.ok = 0
        self.failures: list[str] = []
        self.served_by: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._main())

    async def _main(self) -> None:
        import asyncio

        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits, headers=Cluster.auth(self.key)) as client:

            async def worker(w: int) -> None:
                n = 0
                while not self._stop.is_set():
                    n += 1
                    self.sent += 1
                    body = {"model": "auto", "messages": [{"role": "user", "content": f"load {w}-{n} {time.time()}"}]}
                    try:
                        r = await client.post(self.url + "/v1/chat/completions", json=body)
                    except httpx.HTTPError as e:
                        self.failures.append(f"{type(e).__name__}: {e}")
                        continue
                    if r.status_code == 200 and r.json().get("choices"):
                        self.ok += 1
                        by = r.headers.get("x-served-by", "?")
                        self.served_by[by] = self.served_by.get(by, 0) + 1
                    else:
                        self.failures.append(f"HTTP {r.status_code}: {r.text[:120]}")

            await asyncio.gather(*(worker(w) for w in range(self.concurrency)))


class Cluster:
    def __init__(
        self, redis_url: str, workdir: Path, *, replicas: int = 3, upstream_delay_s: float = 0.0, rpm_limited: int = 30,
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        if shutil.which("haproxy") is None:
            raise FileNotFoundError("haproxy is not installed (apt-get install haproxy)")
        self.workdir = workdir
        self.redis_url = redis_url
        self.n = replicas
        self.upstream_delay_s = upstream_delay_s
        self.rpm_limited = rpm_limited
        self.extra_env = env or {}
        self.up_port = free_port()
        self.ports = [free_port() for _ in range(replicas)]
        self.lb_port, self.stats_port = free_port(), free_port()
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * replicas
        self.upstream: subprocess.Popen[bytes] | None = None
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.cfg = workdir / "gateway.json"

    # -- addresses -----------------------------------------------------------------

    @property
    def lb(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def replica(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    @staticmethod
    def auth(key: str = CLIENT_KEY) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    # -- processes -------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THINKGATE_API_KEYS"))}
        return {**env, "PYTHONPATH": str(ROOT), **self.extra_env}

    def start(self, timeout: float = 60.0) -> Cluster:
        self.upstream = subprocess.Popen(
            [sys.executable, "-m", "router.upstreams.fake_server", "--port", str(self.up_port), "--delay-s", str(self.upstream_delay_s)],
            env=self._env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )  # fmt: skip
        api_base = f"http://127.0.0.1:{self.up_port}/v1"
        self.cfg.write_text(json.dumps(gateway_cfg(api_base, self.redis_url, self.rpm_limited)))
        for i in range(self.n):
            self.start_replica(i, wait=False)
        for i in range(self.n):
            self.wait_ready(i, timeout)
        hcfg = self.workdir / "haproxy.cfg"
        hcfg.write_text(haproxy_cfg(self.lb_port, self.stats_port, self.ports, PROBE_KEY))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(hcfg)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config: {check.stderr or check.stdout}")
        hlog = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115 - the process owns it
        self.haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(hcfg)], stdout=hlog, stderr=hlog, preexec_fn=_die_with_parent
        )
        hlog.close()
        for i in range(self.n):
            self.wait_lb_up(i, timeout)
        return self

    def start_replica(self, i: int, *, wait: bool = True) -> None:
        assert self.procs[i] is None or self.procs[i].poll() is not None
        log = open(self.workdir / f"replica{i}.log", "ab")  # noqa: SIM115 - the process owns it
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "serve", "--config", str(self.cfg), "--port", str(self.ports[i])],
            env=self._env(), stdout=log, stderr=log, preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()
        if wait:
            self.wait_ready(i)

    def stop_replica(self, i: int, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(sig)
        return proc.wait(timeout)

    def wait_ready(self, i: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[i]
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"replica {i} exited: {(self.workdir / f'replica{i}.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.replica(i) + "/readyz", headers=self.auth(PROBE_KEY), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"replica {i} not ready after {timeout}s")

    def log(self, i: int) -> str:
        return (self.workdir / f"replica{i}.log").read_text(errors="replace")

    def limiter_redis_errors(self) -> int:
        """Redis calls the replicas' limiters gave up on (each means per-replica counting for a while)."""
        total = 0
        for i in range(self.n):
            r = httpx.get(self.replica(i) + "/readyz", headers=self.auth(PROBE_KEY), timeout=5)
            total += int(r.json()["checks"]["limits"].get("redis_errors", 0))
        return total

    def lb_retried(self) -> int:
        """Requests HAProxy sent again (its log's retries field: N, or +N when redispatched)."""
        n = 0
        for line in (self.workdir / "haproxy.log").read_text(errors="replace").splitlines():
            parts = line.split()
            if '"POST' in line and len(parts) > 10 and parts[10].count("/") == 4 and parts[10].rsplit("/", 1)[1] != "0":
                n += 1
        return n

    def lb_status(self) -> dict[str, str]:
        """HAProxy's view: server name -> UP / DOWN / ... (from its CSV stats)."""
        text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2).text.lstrip("# ")
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == "replicas" and row["svname"].startswith("r")}

    def wait_lb(self, i: int, want: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.lb_status().get(f"r{i}", "").startswith(want):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"haproxy did not see r{i} {want} in {timeout}s: {self.lb_status()}")

    def wait_lb_up(self, i: int, timeout: float = 30.0) -> None:
        self.wait_lb(i, "UP", timeout)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def stop(self) -> None:
        for proc in [self.haproxy, *self.procs, self.upstream]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [self.haproxy, *self.procs, self.upstream]:
            if proc is not None:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
