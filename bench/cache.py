"""Response-cache latency: lookups as the cache grows, and end to end through the gateway.

    .venv/bin/python bench/cache.py                          # 1k, 10k, 100k entries; Redis + embedded
    .venv/bin/python bench/cache.py --sizes 1000,10000 --backend redis --no-e2e
    .venv/bin/python bench/cache.py --redis-url redis://127.0.0.1:6379/15   # an existing server (FLUSHDB!)

Lookups (per size N; N single-turn prompts in ONE semantic scope — the worst
case, every entry is a candidate): `ResponseCache.get` timed for an exact hit
(req, no vector), a semantic hit (a different prompt whose vector has cosine
0.97 with a stored one: exact miss round trip + index search + fetch) and a
miss (random vector), plus the in-process index search alone, and how long a
new replica takes to replay the index from Redis. Lookups are paced 1 ms apart
(a gateway at <= 1k lookups/s); percentiles are over lookups that answered as
expected — a lookup bypassed because the store tripped on timeouts is counted
in the hit rate and in redis_state (trips, seconds down), not as a sample.
Wall time on a shared box includes waiting for the CPU; the CPU time of the
gateway thread is printed beside it.

End to end (the app in-process via httpx.ASGITransport, instant FakeUpstream,
Redis cache holding the largest N): a miss (new prompt -> upstream), an exact
hit and a semantic hit. The embedder is a table lookup: real MiniLM embedding
time is the classifier's and is measured in bench/routing.py.

Without --redis-url a throwaway redis-server is started on a free loopback
port (no persistence). Vectors are random unit vectors (384-d).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router.api.protocol import parse_request  # noqa: E402
from router.cache import ResponseCache, build_cache  # noqa: E402
from router.cache.testing import RedisServer  # noqa: E402
from router.config import CacheSettings  # noqa: E402
from router.types import ChatRequest  # noqa: E402

DIM = 384


def body(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], "temperature": 0, **kw}


def request(text: str) -> ChatRequest:
    return parse_request("chat", json.dumps(body(text)).encode(), {})


def answer(i: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fast-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {i} " * 20}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52},
    }


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.standard_normal((n, DIM)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def near(v: np.ndarray, sim: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.standard_normal(DIM)
    u -= u.dot(v) * v
    u /= np.linalg.norm(u)
    w = sim * v + np.sqrt(1 - sim**2) * u
    return (w / np.linalg.norm(w)).astype(np.float32)


def pct(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(1000 * statistics.median(xs), 3),
        "p99_ms": round(1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))], 3),
        "n": len(xs),
    }


async def fill(cache: ResponseCache, vecs: np.ndarray, start: int = 0, batch: int = 64) -> float:
    t = time.perf_counter()
    n = len(vecs)
    for lo in range(0, n, batch):
        await asyncio.gather(
            *(cache.put(request(f"prompt {start + i}"), vecs[i], answer(start + i), None, "fast") for i in range(lo, min(n, lo + batch)))
        )
    return time.perf_counter() - t


async def rows(cache: ResponseCache) -> int:
    return int((await cache.ready()).get("index_rows", 0))


async def timed_loop(
    cache: ResponseCache, cases: list[tuple[ChatRequest, np.ndarray | None]], want: str | None
) -> dict[str, Any]:
    """Wall time and this thread's CPU time per `get`, one kind of lookup per loop."""
    wall, cpu, ok = [], [], 0
    for req, vec in cases:
        await asyncio.sleep(0.001)  # paced: a gateway at <= 1k lookups/s, back in its event loop between them
        c, t = time.thread_time(), time.perf_counter()
        hit = await cache.get(req, vec)
        took, took_cpu = time.perf_counter() - t, time.thread_time() - c
        good = (hit is None) if want is None else (hit is not None and hit.kind == want)
        if good:  # a bypassed lookup (store tripped) is fast and wrong: not a latency sample
            wall.append(took)
            cpu.append(took_cpu)
        ok += good
    cpu_ms = statistics.median(cpu) * 1000
    return {**pct(wall), "cpu_p50_ms": round(cpu_ms, 3), ("correct" if want is None else "hit_rate"): ok / len(cases)}


async def lookups(cache: ResponseCache, vecs: np.ndarray, queries: int, rng: np.random.Generator) -> dict[str, Any]:
    from router.cache.keys import request_keys

    n = len(vecs)
    picks = [int(i) for i in rng.integers(0, n, queries)]
    exact = [(request(f"prompt {i}"), None) for i in picks]
    sem = [(request(f"paraphrase {i} {j}"), near(vecs[i], 0.97, rng)) for j, i in enumerate(picks)]
    miss = [(request(f"unrelated {i} {j}"), unit_rows(rng, 1)[0]) for j, i in enumerate(picks)]
    out: dict[str, Any] = {
        "exact_hit": await timed_loop(cache, exact, "exact"),
        "semantic_hit": await timed_loop(cache, sem, "semantic"),
        "miss": await timed_loop(cache, miss, None),
    }
    store: Any = cache.store
    scope = request_keys(sem[0][0]).scope
    index_only = []
    for _, q in sem:
        t = time.perf_counter()
        store.index.search(scope, q, cache.settings.semantic_threshold, now=time.time())
        index_only.append(time.perf_counter() - t)
    out["index_search_only"] = pct(index_only)
    return out


async def bench_backend(
    kind: str, url: str | None, sizes: list[int], queries: int, seed: int, timeout_ms: float
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Returns the figures and the vectors of the last size (left in Redis for the e2e run)."""
    rng = np.random.default_rng(seed)
    results = []
    vecs = unit_rows(rng, 1)
    for n in sizes:
        if url:
            import redis.asyncio as aredis

            client = aredis.Redis.from_url(url)
            await client.flushdb()
            await client.aclose()
        settings = CacheSettings(redis_url=url, max_entries=max(2 * n, 1000), timeout_ms=timeout_ms)
        vecs = unit_rows(rng, n)
        res: dict[str, Any] = {"backend": kind, "entries": n}
        if url:
            # one replica writes (generous budget: filling is not what is measured), a
            # second one replays the index from Redis and serves the lookups
            writer = build_cache(settings.model_copy(update={"timeout_ms": 2000.0}))
            res["fill_s"] = round(await fill(writer, vecs), 2)
            await writer.close()
            cache = build_cache(settings)
            t = time.perf_counter()
            await cache.ready()
            while await rows(cache) < n:
                await asyncio.sleep(0.01)
            res["replica_index_load_s"] = round(time.perf_counter() - t, 2)
        else:
            cache = build_cache(settings)
            res["fill_s"] = round(await fill(cache, vecs), 2)
        assert await rows(cache) == n, await cache.ready()
        await lookups(cache, vecs, min(200, queries), rng)  # warm up
        res.update(await lookups(cache, vecs, queries, rng))
        if url:
            info = await cache.ready()
            res["redis_state"] = {k: info[k] for k in ("state", "timeouts", "trips", "down_s_total", "errors", "bypassed")}
        res["index_mb"] = round(n * (DIM * 4 + 48 + 16) / 2**20, 1)
        results.append(res)
        print(json.dumps(res), flush=True)
        await cache.close()
    return results, vecs


async def bench_e2e(url: str, vecs: np.ndarray, requests: int, seed: int, timeout_ms: float) -> dict[str, Any]:
    """Through the app, on the entries the last lookup run left in Redis."""
    import httpx

    from router import config
    from router.app import create_app
    from router.upstreams.fake import FakeUpstream

    rng = np.random.default_rng(seed + 1)
    n = len(vecs)
    cache = build_cache(CacheSettings(redis_url=url, max_entries=max(2 * n, 1000), timeout_ms=timeout_ms))
    await cache.ready()
    while await rows(cache) < n:
        await asyncio.sleep(0.01)

    table: dict[str, np.ndarray] = {}

    class TableEmbedder:
        async def embed(self, messages: list[dict[str, Any]], then: Any = None) -> Any:
            v = table.get(str(messages[-1]["content"]), vecs[0])
            return v if then is None else (v, then(v))

    s = config.from_dict(
        {
            "models": {"fast": {"provider": "fake", "model": "fast-model"}},
            "routes": {"auto": {"pin": "fast"}},
            "selfref": {"enabled": False},
        }
    )
    up = FakeUpstream("fast", "fast-model")
    app = create_app(s, upstreams={"fast": up}, cache=cache, embedder=TableEmbedder())
    out: dict[str, Any] = {"entries": n}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as http:

        async def timed(b: dict[str, Any], want: str) -> tuple[float, bool]:
            t = time.perf_counter()
            r = await http.post("/v1/chat/completions", json=b)
            took = time.perf_counter() - t
            assert r.status_code == 200, r.text
            return took, r.headers["x-thinkgate-cache"] == want

        for label, want in (("miss", "miss"), ("exact_hit", "exact"), ("semantic_hit", "semantic")):
            xs, ok = [], 0
            for j in range(requests + 50):
                i = int(rng.integers(0, n))
                if want == "miss":
                    text = f"new prompt {j}"
                    table[text] = unit_rows(rng, 1)[0]
                elif want == "exact":
                    text = f"prompt {i}"
                else:
                    text = f"reworded {i} {j}"
                    table[text] = near(vecs[i], 0.97, rng)
                await asyncio.sleep(0.001)
                took, as_expected = await timed(body(text), want)
                if j >= 50 and as_expected:  # after warm-up; a bypassed lookup is no sample
                    xs.append(took)
                if j >= 50:
                    ok += as_expected
            out[label] = {**pct(xs), "as_expected": ok / requests}
        out["upstream_calls"] = len(up.calls)
    info = await cache.ready()
    out["redis_state"] = {k: info[k] for k in ("state", "timeouts", "trips", "down_s_total", "errors", "bypassed")}
    await cache.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--backend", choices=["redis", "memory", "both"], default="both")
    ap.add_argument("--redis-url", default=None, help="use this server (its DB is FLUSHED) instead of a throwaway one")
    ap.add_argument("--e2e-requests", type=int, default=500)
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-ms", type=float, default=20.0, help="the cache's per-command budget (product default 20)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: stop redis-server
    sizes = [int(s) for s in args.sizes.split(",")]

    server = None
    url = args.redis_url
    if url is None and args.backend != "memory":
        server = RedisServer().start()
        url = server.url
    results: dict[str, Any] = {"sizes": sizes, "lookups": []}
    try:
        if args.backend in ("redis", "both"):
            figures, last = await bench_backend("redis", url, sizes, args.queries, args.seed, args.timeout_ms)
            results["lookups"] += figures
            if not args.no_e2e:
                assert url is not None
                results["e2e"] = await bench_e2e(url, last, args.e2e_requests, args.seed, args.timeout_ms)
                print(json.dumps({"e2e": results["e2e"]}), flush=True)
        if args.backend in ("memory", "both"):
            figures, _ = await bench_backend("memory", None, sizes, args.queries, args.seed, args.timeout_ms)
            results["lookups"] += figures
    finally:
        if server is not None:
            server.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    print("\nwall p50/p99 ms per ResponseCache.get (CPU ms of the gateway thread in brackets)")
    print("backend  entries  exact hit              semantic hit           miss                   index search only")
    for r in results["lookups"]:

        def cell(d: dict[str, Any]) -> str:
            return f"{d['p50_ms']:6.3f}/{d['p99_ms']:<7.3f}[{d['cpu_p50_ms']:.3f}]"

        print(
            f"{r['backend']:7} {r['entries']:>8}  {cell(r['exact_hit']):22} {cell(r['semantic_hit']):22} "
            f"{cell(r['miss']):22} {r['index_search_only']['p50_ms']:6.3f}/{r['index_search_only']['p99_ms']:<7.3f}"
            f"  hit rates {r['exact_hit']['hit_rate']:.3f}/{r['semantic_hit']['hit_rate']:.3f}"
        )
    if "e2e" in results:
        e = results["e2e"]
        print(f"\nthrough the gateway ({e['entries']} entries): " + ", ".join(
            f"{k} p50 {e[k]['p50_ms']} ms p99 {e[k]['p99_ms']} ms" for k in ("miss", "exact_hit", "semantic_hit")
        ))


if __name__ == "__main__":
    asyncio.run(main())
