"""Throughput of 1 vs 3 `thinkgate serve` replicas behind HAProxy on one Redis
(tests/scale/harness.py), with the fake upstream in its own process: closed-loop
load at a fixed concurrency for a fixed time through HAProxy, then requests/s,
p50/p99 and each replica's RSS. One run prints both sides and the ratio.

    .venv/bin/python bench/replicas.py                      # 20 s per side, concurrency 32
    .venv/bin/python bench/replicas.py --seconds 10 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from router.cache.testing import RedisServer  # noqa: E402
from tests.scale.harness import Cluster  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def drive(url: str, seconds: float, concurrency: int) -> tuple[int, int, list[float]]:
    lat: list[float] = []
    failed = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers=Cluster.auth()) as client:
        end = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal failed
            n = 0
            while time.perf_counter() < end:
                n += 1
                body = {"model": "auto", "messages": [{"role": "user", "content": f"bench {w} {n}"}], "temperature": 0.7}
                t = time.perf_counter()
                try:
                    r = await client.post(url + "/v1/chat/completions", json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    lat.append((time.perf_counter() - t) * 1000)
                else:
                    failed += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return len(lat), failed, lat


def side(n: int, args: argparse.Namespace) -> dict[str, float]:
    with RedisServer() as redis, tempfile.TemporaryDirectory(prefix="thinkgate-replicas-") as tmp:
        with Cluster(redis.url, Path(tmp), replicas=n) as c:
            asyncio.run(drive(c.lb, 2.0, args.concurrency))  # warm
            ok, failed, lat = asyncio.run(drive(c.lb, args.seconds, args.concurrency))
            rss = [rss_mb(p) for p in c.pids()]
    q = statistics.quantiles(lat, n=100)
    return {"rps": ok / args.seconds, "failed": failed, "p50": statistics.median(lat), "p99": q[98], "rss": statistics.median(rss)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    res = {n: side(n, args) for n in (1, 3)}
    load = os.getloadavg()
    print(f"{args.concurrency} concurrent clients through HAProxy, {args.seconds:.0f} s per side, {os.cpu_count()} CPUs, load average {load[0]:.1f}")
    print(f"{'replicas':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} {'RSS MB/replica':>15}")
    for n, r in res.items():
        print(f"{n:>9} {r['rps']:8.1f} {r['p50']:8.1f} {r['p99']:8.1f} {r['failed']:7.0f} {r['rss']:15.1f}")
    print(f"3 vs 1 replica: {res[3]['rps'] / res[1]['rps']:.2f}x the throughput")


if __name__ == "__main__":
    main()
