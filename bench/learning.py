"""The learning loop's cost to clients, from one run:

1. shadow-sampling overhead: client latency through a real `thinkgate serve` with
   learning.shadow_rate 0, 0.1 and 1 (at 1, every request also asks the route not
   taken and the judge twice, in the background), non-streamed and streamed, side by side;
2. hot reload under load: concurrent clients while the artifact is swapped back
   and forth via POST /admin/router/reload: failed requests, reload time;
3. the reload time of the real default artifact (2688-d + lexical part), in process.

    python bench/learning.py [--n 200] [--concurrency 4] [--reload-s 5]

Upstreams are loopback fake servers (router/upstreams/fake_server.py) in their
own processes: fast answers in 50 ms, the reasoning model (the shadow call when
the fast route is taken) in 300 ms, the judge in 50 ms. The classifier uses the
hash embedder and a small artifact, so the figures are the gateway's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.learning.testing import config, start, stop, write_artifact  # noqa: E402
from router.upstreams.llamacpp import free_port  # noqa: E402

RATES = (0.0, 0.1, 1.0)
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is six times seven?"}]}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def fake(port: int, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "router.upstreams.fake_server", "--port", str(port), *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def wait_up(port: int) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(100):
            try:
                await c.get(f"http://127.0.0.1:{port}/v1/models", timeout=0.5)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"fake server on {port} did not start")


async def run_load(base: str, n: int, concurrency: int, stream: bool) -> list[float]:
    lat: list[float] = []
    todo = iter(range(n))
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=concurrency * 2)) as c:

        async def worker() -> None:
            for _ in todo:
                t = time.perf_counter()
                if stream:
                    async with c.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                        async for _chunk in r.aiter_bytes():
                            pass
                else:
                    r = await c.post("/v1/chat/completions", json=CHAT)
                if r.status_code != 200:
                    raise RuntimeError(f"a client request failed with HTTP {r.status_code}")
                lat.append((time.perf_counter() - t) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat


async def overhead(tmp: Path, ups: dict[str, str], art: Path, n: int, concurrency: int) -> None:
    results: dict[tuple[float, bool], list[float]] = {}
    jobs: dict[float, dict] = {}
    for rnd in range(2):  # two rounds, alternating, so drift hits both settings alike
        for rate in RATES:
            d = tmp / f"r{rnd}-{rate}"
            d.mkdir()
            port = free_port()
            cfg = config(d, port, ups["fast"], ups["reasoning"], ups["judge"], art, shadow_rate=rate, max_concurrent=64)
            proc = await start(cfg, port)
            try:
                base = f"http://127.0.0.1:{port}"
                await run_load(base, 20, concurrency, False)  # warm-up
                for stream in (False, True):
                    results.setdefault((rate, stream), []).extend(await run_load(base, n, concurrency, stream))
                await asyncio.sleep(1.0)
                async with httpx.AsyncClient() as c:
                    st = (await c.get(base + "/dashboard/api/learning")).json()["learning"]["stats"]
                for k, v in st.items():
                    jobs.setdefault(rate, {}).setdefault(k, 0)
                    jobs[rate][k] += v
            except Exception:
                print(stop(proc)[-3000:], file=sys.stderr)  # the server's side of the failure
                raise
            finally:
                stop(proc)
    print(f"\n## shadow sampling overhead on client latency ({2 * n} requests per cell, concurrency {concurrency}; ms)")
    print("| request | " + " | ".join(f"rate {r:g} p50 | p99" for r in RATES) + " | p50 ratio 1 : 0 | p99 ratio 1 : 0 |")
    print("|---|" + "---|---|" * len(RATES) + "---|---|")
    for stream in (False, True):
        cells, ref = [], None
        for rate in RATES:
            xs = results[(rate, stream)]
            p50, p99 = statistics.median(xs), pct(xs, 0.99)
            ref = ref or (p50, p99)
            cells.append(f"{p50:.1f} | {p99:.1f}")
        last = results[(RATES[-1], stream)]
        print(f"| {'streamed' if stream else 'non-streamed'} | " + " | ".join(cells)
              + f" | {statistics.median(last) / ref[0]:.3f} | {pct(last, 0.99) / ref[1]:.3f} |")  # fmt: skip
    for rate in RATES[1:]:
        st = jobs.get(rate, {})
        print(f"shadow_rate {rate:g}: {st.get('started', 0)} shadow jobs started, {st.get('recorded', 0)} recorded, "
              f"{st.get('busy', 0)} dropped as busy, {st.get('failed', 0)} failed")  # fmt: skip


async def reload_under_load(tmp: Path, ups: dict[str, str], seconds: float, concurrency: int) -> None:
    a = write_artifact(tmp / "a", intercept=-5.0)
    b = write_artifact(tmp / "b", intercept=5.0)
    d = tmp / "reload"
    d.mkdir()
    port = free_port()
    proc = await start(config(d, port, ups["fast"], ups["reasoning"], ups["judge"], a, shadow_rate=0.0), port)
    base = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    versions: set[str] = set()
    server_ms: list[float] = []
    client_ms: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=concurrency * 2)) as c:
            end = time.monotonic() + seconds

            async def load() -> None:
                while time.monotonic() < end:
                    try:
                        r = await c.post("/v1/chat/completions", json=CHAT)
                        statuses.append(r.status_code)
                        versions.add(r.headers.get("x-thinkgate-router", ""))
                    except httpx.HTTPError:
                        statuses.append(-1)

            async def flips() -> None:
                i = 0
                while time.monotonic() < end - 0.3:
                    await asyncio.sleep(0.25)
                    t = time.perf_counter()
                    r = await c.post("/admin/router/reload", json={"artifact": str(b if i % 2 == 0 else a)})
                    client_ms.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text
                    server_ms.append(r.json()["reload_ms"])
                    i += 1

            await asyncio.gather(*(load() for _ in range(concurrency)), flips())
    finally:
        stop(proc)
    failed = sum(1 for s in statuses if s != 200)
    print(f"\n## hot reload under load ({concurrency} clients, {seconds:.0f} s, a reload every 0.25 s)")
    print(f"requests: {len(statuses)}, failed: {failed}; reloads: {len(server_ms)}, artifact versions seen in headers: {len(versions)}")
    print(f"reload time, small artifact: median {statistics.median(server_ms):.1f} ms in the server "
          f"(max {max(server_ms):.1f}), {statistics.median(client_ms):.1f} ms as the admin client sees it")  # fmt: skip


def default_artifact_reload() -> None:
    from router.learning.slot import load_checked

    times = []
    for _ in range(5):
        t = time.perf_counter()
        load_checked("default", 2688)
        times.append((time.perf_counter() - t) * 1000)
    print(f"\n## reload time of models/default (2688-d + 262,144 lexical weights), in process: median {statistics.median(times):.0f} ms "
          f"(min {min(times):.0f}, max {max(times):.0f}, 5 loads; the swap itself is one attribute)")  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="requests per cell and round")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--reload-s", type=float, default=5.0)
    args = ap.parse_args()
    ports = {k: free_port() for k in ("fast", "reasoning", "judge")}
    procs = [
        fake(ports["fast"], "--delay-s", "0.05", "--words", "8"),
        fake(ports["reasoning"], "--delay-s", "0.3", "--words", "8"),
        fake(ports["judge"], "--delay-s", "0.05", "--reply", "[[B]]"),
    ]
    try:
        for p in ports.values():
            await wait_up(p)
        ups = {k: f"http://127.0.0.1:{p}/v1" for k, p in ports.items()}
        with tempfile.TemporaryDirectory() as tmp_s:
            tmp = Path(tmp_s)
            art = write_artifact(tmp / "art", threshold=0.99)  # everything routes fast: the shadow call is the slow one
            print(f"cpu cores: {os.cpu_count()}; upstream delays: fast 50 ms, reasoning 300 ms, judge 50 ms")
            await overhead(tmp, ups, art, args.n, args.concurrency)
            await reload_under_load(tmp, ups, args.reload_s, args.concurrency * 2)
        default_artifact_reload()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(5)


if __name__ == "__main__":
    asyncio.run(main())
