"""Routed and proxied through the gateway of this checkout and of another git ref, side by
side: one `thinkgate serve` per (code, alias) on one instant upstream, the same real
prompt mix at 32 concurrent requests, rounds alternating between them. Prints each one's
median req/s and median CPU per request (user + system over all its threads, from
/proc/PID/stat), and the main thread's share of that CPU.

    .venv/bin/python bench/gateway_ab.py [--ref GITREF] [--requests 1500] [--rounds 6]

Without --ref it compares this checkout's routed (`auto`) and proxied (`fast`) paths only.
On a noisy 2-core VM one gateway measured alone moves 15-30 % between runs; these
gateways share every round's conditions, so their ratios are the figures to quote."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import overhead  # noqa: E402
from routing import real_sets  # noqa: E402

CONFIG = """
models:
  fast: {{provider: openai, model: fake-model, api_base: "{api}"}}
  reasoning: {{provider: openai, model: fake-model, api_base: "{api}", reasoning: true}}
routes: {{auto: {{}}, fast: {{pin: fast}}}}
classifier: {{encoder: static, artifact: "static-default"}}
selfref: {{enabled: false}}
cache: {{enabled: false}}
server: {{log_level: warning}}
"""


async def drive(url: str, alias: str, texts: list[str], n: int, conc: int, offset: int) -> float:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=conc)) as client:
        queue = iter(range(n))

        async def worker() -> None:
            for i in queue:
                # a unique tail per request: the embedder's memo of recent texts never answers
                body = {"model": alias, "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"{texts[i % len(texts)]} #{offset + i}"}]}
                (await client.post(url, json=body)).raise_for_status()

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return n / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", help="a git ref to compare with this checkout (checked out into a temporary worktree)")
    ap.add_argument("--requests", type=int, default=1500, help="requests per gateway per round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args(argv)

    texts = [t for ts in real_sets(64).values() for t in ts]
    tmp = Path(tempfile.mkdtemp(prefix="tg-gateway-ab-"))
    codes = {"this": ROOT}
    procs: list[subprocess.Popen] = []
    try:
        if args.ref:
            codes[args.ref] = tmp / "ref"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(codes[args.ref]), args.ref], check=True)
        up = overhead.free_port()
        procs.append(overhead.start([sys.executable, "-m", "router.upstreams.fake_server", "--port", str(up)]))
        overhead.wait_ready(f"http://127.0.0.1:{up}/v1/models", procs[-1])
        cfg = tmp / "thinkgate.yaml"
        cfg.write_text(CONFIG.format(api=f"http://127.0.0.1:{up}/v1"))
        gateways: dict[str, tuple[str, str, int]] = {}  # name -> (url, alias, pid)
        for code, where in codes.items():
            port = overhead.free_port()
            p = subprocess.Popen([sys.executable, "-m", "router.cli", "serve", "--config", str(cfg), "--port", str(port)],
                                 cwd=where, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            overhead.wait_ready(f"http://127.0.0.1:{port}/healthz", p, timeout=300)
            for alias, what in (("auto", "routed"), ("fast", "proxied")):
                gateways[f"{code} {what}"] = (f"http://127.0.0.1:{port}/v1/chat/completions", alias, p.pid)
        rps: dict[str, list[float]] = {k: [] for k in gateways}
        cpu: dict[str, list[float]] = {k: [] for k in gateways}
        main_cpu: dict[str, list[float]] = {k: [] for k in gateways}
        for name, (url, alias, _) in gateways.items():  # warm-up: connections, model, word memo
            asyncio.run(drive(url, alias, texts, 4 * args.concurrency, args.concurrency, 0))
        for r in range(args.rounds):
            for name in (list(gateways) if r % 2 == 0 else list(gateways)[::-1]):
                url, alias, pid = gateways[name]
                c0, m0 = overhead.cpu_s(pid), overhead.cpu_s(pid, pid)
                rps[name].append(asyncio.run(drive(url, alias, texts, args.requests, args.concurrency, (r + 1) * 10 * args.requests)))
                cpu[name].append(1e3 * (overhead.cpu_s(pid) - c0) / args.requests)
                main_cpu[name].append(1e3 * (overhead.cpu_s(pid, pid) - m0) / args.requests)
        print(f"{args.concurrency} concurrent, real prompt mix, {args.requests} requests x {args.rounds} alternating rounds (medians)")
        print(f"{'gateway':28s} {'req/s':>7s} {'CPU ms/req':>11s} {'main thread':>12s}")
        for name in gateways:
            print(f"{name:28s} {statistics.median(rps[name]):7.0f} {statistics.median(cpu[name]):11.2f} "
                  f"{statistics.median(main_cpu[name]):12.2f}")
        for code in codes:
            routed, proxied = statistics.median(rps[f"{code} routed"]), statistics.median(rps[f"{code} proxied"])
            print(f"{code}: routed / proxied {routed / proxied:.2f}")
    finally:
        overhead.stop(procs)
        if args.ref:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(codes[args.ref])], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
