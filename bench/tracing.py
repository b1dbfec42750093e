"""Trace overhead per request: the same gateway with tracing off and with every
request exported over OTLP/HTTP to a loopback receiver (router.tracing.receiver).

Both apps are built as `thinkgate serve` builds them (router.build.build_app:
auth, limits, retries/breaker, cache, decision log) with the in-process fake
upstream, and driven in-process through httpx's ASGI transport, one request at
a time, in alternating blocks so drift hits both alike. The cache is off so
every request runs the whole pipeline and makes its upstream span. Reports the
median wall time and the process CPU per request (the exporter's background
thread included), side by side.

    .venv/bin/python bench/tracing.py                 # 3000 requests per side
    .venv/bin/python bench/tracing.py --requests 500 --blocks 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from router import config  # noqa: E402
from router.build import build_app  # noqa: E402

CFG = {
    "models": {"fast": {"provider": "fake", "model": "fake-fast"}, "reasoning": {"provider": "fake", "model": "fake-r"}},
    "routes": {"auto": {}},
    "classifier": {"enabled": False},
    "cache": {"enabled": False},
    "selfref": {"enabled": False},
}
BODY = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}


async def drive(app, n: int) -> tuple[list[float], float]:
    lat = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as client:
        cpu0 = time.process_time()
        for _ in range(n):
            t = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=BODY)
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
        cpu = (time.process_time() - cpu0) * 1000 / n
    return lat, cpu


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000, help="per side")
    ap.add_argument("--blocks", type=int, default=6)
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    settings = config.from_dict(CFG)
    # the receiver decodes in its own process: its CPU is not the gateway's
    rx = subprocess.Popen(
        [sys.executable, "-m", "router.tracing.receiver", "--port", str(free_port())],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    endpoint = rx.stdout.readline().split()[-1]  # "listening http://127.0.0.1:PORT"
    off = build_app(settings, env={})
    on = build_app(settings, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "bench"})
    per_block = max(1, args.requests // args.blocks)
    res: dict[str, tuple[list[float], list[float]]] = {"off": ([], []), "on": ([], [])}
    try:
        async with off.router.lifespan_context(off), on.router.lifespan_context(on):  # shutdown flushes the spans
            await drive(off, 200)  # warm both
            await drive(on, 200)
            for _ in range(args.blocks):
                for name, app in (("off", off), ("on", on)):
                    lat, cpu = await drive(app, per_block)
                    res[name][0].extend(lat)
                    res[name][1].append(cpu)
    finally:
        rx.send_signal(signal.SIGTERM)
        got = rx.communicate(timeout=30)[0].strip()
    n = per_block * args.blocks
    print(f"tracing overhead, {n} sequential requests per side, {args.blocks} alternating blocks, fake upstream in-process")
    print(f"{'':>14} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}")
    for name in ("off", "on"):
        lat, cpus = res[name]
        q = statistics.quantiles(lat, n=100)
        print(f"{'export ' + name:>14} {statistics.median(lat):8.3f} {q[98]:8.3f} {statistics.median(cpus):11.3f}")
    d50 = statistics.median(res["on"][0]) - statistics.median(res["off"][0])
    dcpu = statistics.median(res["on"][1]) - statistics.median(res["off"][1])
    ratio = statistics.median(res["on"][0]) / statistics.median(res["off"][0])
    print(f"on - off: p50 +{d50:.3f} ms ({ratio:.2f}x), CPU +{dcpu:.3f} ms per request (exporter thread included)")
    print(f"receiver: {got} (requests traced: {n + 200})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    asyncio.run(main())
