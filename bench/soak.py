"""Soak run: many requests at high concurrency through a real `thinkgate serve`
process in front of the loopback fake upstream. Reports failed requests (must be
0), latency percentiles and the gateway's resident memory at start and end.

    .venv/bin/python bench/soak.py                          # 20k requests, concurrency 64
    .venv/bin/python bench/soak.py --requests 2000 --concurrency 32 --stream-share 0.5
    .venv/bin/python bench/soak.py --fail-rate 0.3          # upstream faults: fallback/retries must hide them
    .venv/bin/python bench/soak.py --redis --kill-redis     # cache, log, limits on Redis; Redis killed at 1/3, back at 2/3

Everything runs on loopback; the run stops at --max-seconds whatever is left.
The gateway is `thinkgate serve` as shipped (router.build: auth and limits
middleware, retries and a circuit breaker around every upstream, cache,
decision log), with one API key from THINKGATE_API_KEYS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.upstreams.llamacpp import free_port  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise SystemExit(f"process exited ({proc.returncode}): {err}")
        try:
            if httpx.get(url, timeout=0.5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def _openai_error(text: str) -> bool:
    """A clean error: an OpenAI-shaped body the client's SDK can raise from."""
    try:
        err = json.loads(text)["error"]
        return isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err)
    except (ValueError, KeyError, TypeError):
        return False


def config(api_base: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": port, "drain_s": 10, "log_level": "warning"},
        "models": {
            "fast": {"provider": "openai", "model": "fake-model", "api_base": api_base, "timeout": 10},
            "reasoning": {
                "provider": "openai",
                "model": "fake-model",
                "api_base": api_base,
                "reasoning": True,
                "timeout": 10,
            },
        },
        "routes": {"auto": {"fallback": True}},
        "classifier": {"enabled": False},
        "selfref": {"enabled": False},
        "cache": {"enabled": args.cache or bool(args.redis_url), "redis_url": args.redis_url},
        "limits": {"rpm": 10**7, "tpm": 10**10},
        "decisions": {"max_records": args.log_records},
    }


async def load(base: str, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    rng = random.Random(args.seed)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    rss: list[tuple[int, float]] = []
    sent = 0
    deadline = time.monotonic() + args.max_seconds
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits, headers=headers) as client:

        async def one(i: int) -> None:
            stream = rng.random() < args.stream_share
            body = {
                "model": "auto",
                "messages": [{"role": "user", "content": f"soak request {i} {rng.random():.6f}"}],
                "max_tokens": 32,
                "stream": stream,
            }
            hdr = {"x-thinkgate-force-route": "reasoning"} if rng.random() < args.reasoning_share else {}
            t0 = time.perf_counter()
            try:
                if stream:
                    async with client.stream("POST", "/v1/chat/completions", json=body, headers=hdr) as r:
                        text = (await r.aread()).decode()
                    ok = r.status_code == 200 and text.rstrip().endswith("data: [DONE]") and '"error"' not in text
                    # an error event after output began, then [DONE], is a clean end of a stream too
                    clean = (r.status_code >= 400 and _openai_error(text)) or (
                        r.status_code == 200 and text.rstrip().endswith("data: [DONE]")
                    )
                else:
                    r = await client.post("/v1/chat/completions", json=body, headers=hdr)
                    ok = r.status_code == 200 and bool(r.json().get("choices"))
                    clean = r.status_code >= 400 and _openai_error(r.text)
                why = "ok" if ok else f"http_{r.status_code}" + ("" if clean else "_malformed")
            except Exception as e:  # noqa: BLE001 - every failure counts, whatever it is
                ok, why = False, type(e).__name__
            latencies.append((time.perf_counter() - t0) * 1000)
            if not ok:
                failures[why] = failures.get(why, 0) + 1

        queue = iter(range(args.requests))
        step = max(1, args.requests // 10)

        async def worker() -> None:
            nonlocal sent
            for i in queue:
                if time.monotonic() > deadline:
                    return
                sent += 1
                if args.on_progress is not None:
                    args.on_progress(sent)
                await one(i)
                if sent >= (len(rss) + 1) * step:  # ten samples over the run
                    rss.append((sent, round(rss_mb(pid), 1)))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
    return {
        "sent": sent,
        "failed": sum(failures.values()),
        "failures": failures,
        "broken": sum(v for k, v in failures.items() if not k.startswith("http_") or k.endswith("_malformed")),
        "elapsed_s": round(elapsed, 1),
        "rps": round(sent / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(pct(latencies, 50), 2),
        "p99_ms": round(pct(latencies, 99), 2),
        "max_ms": round(max(latencies), 2) if latencies else None,
        "rss_samples_mb": rss,
        "stopped_early": sent < args.requests,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="thinkgate soak run (loopback)")
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--warmup", type=int, default=500, help="requests before the start RSS is taken")
    p.add_argument("--stream-share", type=float, default=0.2)
    p.add_argument("--reasoning-share", type=float, default=0.2)
    p.add_argument("--fail-rate", type=float, default=0.0, help="upstream 5xx share (faults the gateway must absorb)")
    p.add_argument("--cache", action="store_true", help="enable the in-process response cache")
    p.add_argument("--log-records", type=int, default=10_000, help="decisions.max_records (the in-memory ring's bound)")
    p.add_argument("--redis", action="store_true", help="a real redis-server for cache, decision log and limits")
    p.add_argument("--kill-redis", action="store_true", help="SIGKILL Redis at 1/3 of the run, restart it at 2/3")
    p.add_argument("--max-seconds", type=float, default=600)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the JSON report here too")
    args = p.parse_args(argv)
    args.key = "sk-soak-0123456789abcdef"
    args.on_progress = None
    redis = None
    args.redis_url = None
    if args.redis or args.kill_redis:
        from router.cache.testing import RedisServer

        redis = RedisServer().start()
        args.redis_url = redis.url
    events: list[str] = []

    tmp = Path(tempfile.mkdtemp(prefix="thinkgate-soak-"))
    up_port, gw_port = free_port(), free_port()
    py = sys.executable
    upstream = subprocess.Popen(
        [py, "-m", "router.upstreams.fake_server", "--port", str(up_port), "--fail-rate", str(args.fail_rate), "--seed", "7"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    cfg = tmp / "soak.json"
    cfg.write_text(json.dumps(config(f"http://127.0.0.1:{up_port}/v1", gw_port, args)))
    env = {**os.environ, "THINKGATE_API_KEYS": f"{args.key}:soak"}
    cmd = [py, "-m", "router.cli", "serve", "--config", str(cfg)]
    gateway = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", upstream)
        wait_http(f"http://127.0.0.1:{gw_port}/healthz", gateway)
        base = f"http://127.0.0.1:{gw_port}"
        rss_boot = rss_mb(gateway.pid)
        warm = argparse.Namespace(**{**vars(args), "requests": args.warmup, "on_progress": None})
        asyncio.run(load(base, warm, gateway.pid))
        rss_start = rss_mb(gateway.pid)
        if args.kill_redis and redis is not None:

            def chaos(n: int) -> None:
                if n == args.requests // 3:
                    redis.kill()
                    events.append(f"redis killed at request {n}")
                elif n == 2 * args.requests // 3:
                    redis.start()
                    events.append(f"redis restarted at request {n}")

            args.on_progress = chaos
        report = asyncio.run(load(base, args, gateway.pid))
        rss_end = rss_mb(gateway.pid)
        report = {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "stream_share": args.stream_share,
            "upstream_fail_rate": args.fail_rate,
            "redis": args.redis_url is not None,
            "events": events,
            **report,
            "rss_boot_mb": round(rss_boot, 1),
            "rss_start_mb": round(rss_start, 1),
            "rss_end_mb": round(rss_end, 1),
            "rss_growth_mb": round(rss_end - rss_start, 1),
        }
    finally:
        if redis is not None:
            redis.stop()
        for proc in (gateway, upstream):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    text = json.dumps({**report, "rss_samples_mb": None}, indent=2).replace(
        '"rss_samples_mb": null', '"rss_samples_mb": ' + json.dumps(report["rss_samples_mb"])
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
