"""Gateway overhead: direct to an instant OpenAI-compatible upstream vs through
thinkgate vs through the LiteLLM proxy, side by side in one run.

    python bench/overhead.py [--n1 400] [--n32 3000] [--proxy-venv DIR]

Front ends beside chat (same thinkgate process, same upstream): `tg-responses` is
POST /v1/responses with the same question (stored in the in-process response store,
as by default); `tg-messages` is POST /v1/messages (Anthropic Messages), the same question;
`tg-gemini` is POST /v1beta/models/fast:generateContent (Google's Gemini API), the same
question. `--front-ends gemini` (a comma list) runs only those beside chat.

The LiteLLM proxy runs from its own venv (default ~/.cache/thinkgate/litellm-proxy-venv,
created with `python -m venv DIR && DIR/bin/pip install 'litellm[proxy]==1.106.2'`).
thinkgate runs with routing work off (no classifier, no Self-Ref, no cache) so the
figure is the gateway's own cost; bench/routing.py measures routing separately.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "fast", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 16}
# the same question through the Responses API front end (stored, as by default)
RESPONSES_BODY = {"model": "fast", "input": "What is 2 + 2?", "max_output_tokens": 16}
# and through the Anthropic Messages front end
MESSAGES_BODY = {"model": "fast", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 16}
# and through the Gemini front end (the model is in the URL; a `model` field is accepted and ignored)
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "What is 2 + 2?"}]}], "generationConfig": {"maxOutputTokens": 16}}
FRONT_END_BODIES = {"/v1/responses": RESPONSES_BODY, "/v1/messages": MESSAGES_BODY, ":generateContent": GEMINI_BODY}  # path -> body; else BODY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (Linux), all its threads, or of one of
    them (`thread`: its id; the main thread's is the pid): what the gateway itself
    spends, which a busy shared machine blurs far less than wall-clock latency."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(procs: list[subprocess.Popen]) -> None:
    """Terminate, then kill what has not exited after 15 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


async def cpu_per_request(pid: int, targets: dict[str, tuple[str, str]], n: int, block: int = 50) -> dict[str, float]:
    """Gateway CPU ms per request for each target, in alternating blocks so drift
    (and the previous block's leftover logging) falls on every target alike."""
    used = {name: 0.0 for name in targets}
    async with httpx.AsyncClient(timeout=30) as client:
        for url, model in targets.values():
            for _ in range(20):
                await one(client, url, model)
        for _ in range(max(1, n // block)):
            for name, (url, model) in targets.items():
                c = cpu_s(pid)
                for _ in range(block):
                    await one(client, url, model)
                used[name] += cpu_s(pid) - c
    return {name: v / (max(1, n // block) * block) * 1000 for name, v in used.items()}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def one(client: httpx.AsyncClient, url: str, model: str) -> float:
    t = time.perf_counter()
    body = next((b for path, b in FRONT_END_BODIES.items() if url.endswith(path)), BODY)
    r = await client.post(url, json={**body, "model": model})
    r.raise_for_status()
    return (time.perf_counter() - t) * 1000


async def sequential(targets: dict[str, tuple[str, str]], n: int) -> dict[str, list[float]]:
    """Concurrency 1, interleaved request by request (in a rotating order) so drift hits every target alike."""
    lat: dict[str, list[float]] = {k: [] for k in targets}
    async with httpx.AsyncClient(timeout=30) as client:
        for name, (url, model) in targets.items():  # warm-up
            for _ in range(20):
                await one(client, url, model)
        names = list(targets)
        for i in range(n):
            # rotate the order: a target must not always pay for the one before it
            # (the gateway finishes a request's logging after the reply)
            k = i % len(names)
            for name in names[k:] + names[:k]:
                url, model = targets[name]
                lat[name].append(await one(client, url, model))
    return lat


async def concurrent(url: str, model: str, n: int, conc: int) -> tuple[float, list[float], int]:
    lat: list[float] = []
    failed = 0
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for _ in range(conc):
            await one(client, url, model)
        queue = iter(range(n))

        async def worker() -> None:
            nonlocal failed
            for _ in queue:
                try:
                    lat.append(await one(client, url, model))
                except httpx.HTTPError:
                    failed += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t
    return n / wall, lat, failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n1", type=int, default=400, help="requests per target at concurrency 1")
    ap.add_argument("--n32", type=int, default=3000, help="requests per target at concurrency 32")
    ap.add_argument("--rounds", type=int, default=2, help="concurrency-32 rounds per target (median reported)")
    ap.add_argument("--front-ends", default="responses,messages,gemini", help="front ends measured beside chat")
    ap.add_argument("--proxy-venv", default=str(Path.home() / ".cache" / "thinkgate" / "litellm-proxy-venv"))
    args = ap.parse_args()

    procs: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="tg-overhead-"))
    try:
        up = free_port()
        procs.append(start([sys.executable, "-m", "router.upstreams.fake_server", "--port", str(up)]))
        wait_ready(f"http://127.0.0.1:{up}/v1/models", procs[-1])
        upstream = f"http://127.0.0.1:{up}/v1"

        cfg = tmp / "thinkgate.yaml"
        cfg.write_text(
            f"""
models:
  fast: {{provider: openai, model: fake-model, api_base: "{upstream}"}}
  reasoning: {{provider: openai, model: fake-model, api_base: "{upstream}"}}
routes: {{auto: {{}}, fast: {{pin: fast}}}}
classifier: {{enabled: false}}
selfref: {{enabled: false}}
cache: {{enabled: false}}
server: {{log_level: warning}}
"""
        )
        tg = free_port()
        procs.append(start([sys.executable, "-m", "router.cli", "serve", "--config", str(cfg), "--port", str(tg)]))
        wait_ready(f"http://127.0.0.1:{tg}/healthz", procs[-1])

        targets = {
            "direct": (f"{upstream}/chat/completions", "fake-model"),
            "thinkgate": (f"http://127.0.0.1:{tg}/v1/chat/completions", "fast"),
            "tg-responses": (f"http://127.0.0.1:{tg}/v1/responses", "fast"),
            "tg-messages": (f"http://127.0.0.1:{tg}/v1/messages", "fast"),
            "tg-gemini": (f"http://127.0.0.1:{tg}/v1beta/models/fast:generateContent", "fast"),
        }
        wanted = {f"tg-{f.strip()}" for f in args.front_ends.split(",") if f.strip()}
        front_ends = [k for k in ("tg-responses", "tg-messages", "tg-gemini") if k in wanted]
        targets = {k: v for k, v in targets.items() if not k.startswith("tg-") or k in front_ends}
        litellm_bin = Path(args.proxy_venv) / "bin" / "litellm"
        if litellm_bin.exists():
            pcfg = tmp / "proxy.yaml"
            pcfg.write_text(
                f"""
model_list:
  - model_name: fast
    litellm_params: {{model: openai/fake-model, api_base: "{upstream}", api_key: dummy}}
litellm_settings: {{telemetry: false}}
"""
            )
            lp = free_port()
            procs.append(start([str(litellm_bin), "--config", str(pcfg), "--port", str(lp), "--host", "127.0.0.1"],
                               env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                                    # no auth on either gateway, so neither pays for it
                                    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}))
            wait_ready(f"http://127.0.0.1:{lp}/health/liveliness", procs[-1], timeout=180)
            targets["litellm-proxy"] = (f"http://127.0.0.1:{lp}/v1/chat/completions", "fast")
        else:
            print(f"(LiteLLM proxy not found at {litellm_bin}; skipping it)", file=sys.stderr)

        print(f"concurrency 1: {args.n1} requests per target, interleaved", file=sys.stderr)
        lat1 = asyncio.run(sequential(targets, args.n1))
        direct_p50, direct_p99 = pct(lat1["direct"], 0.5), pct(lat1["direct"], 0.99)

        print(f"concurrency 32: {args.n32} requests per target x {args.rounds} rounds", file=sys.stderr)
        rps: dict[str, list[float]] = {k: [] for k in targets}
        lat32: dict[str, list[float]] = {k: [] for k in targets}
        fails: dict[str, int] = {k: 0 for k in targets}
        for _ in range(args.rounds):
            for name, (url, model) in targets.items():
                r, lat, f = asyncio.run(concurrent(url, model, args.n32, 32))
                rps[name].append(r)
                lat32[name].extend(lat)
                fails[name] += f

        print()
        print(f"{'target':<14} {'c1 p50 ms':>10} {'c1 p99 ms':>10} {'added p50':>10} {'added p99':>10} "
              f"{'c32 req/s':>10} {'c32 p50 ms':>11} {'c32 p99 ms':>11} {'failed':>7}")
        for name in targets:
            p50, p99 = pct(lat1[name], 0.5), pct(lat1[name], 0.99)
            print(f"{name:<14} {p50:10.2f} {p99:10.2f} {p50 - direct_p50:10.2f} {p99 - direct_p99:10.2f} "
                  f"{statistics.median(rps[name]):10.0f} {pct(lat32[name], 0.5):11.2f} {pct(lat32[name], 0.99):11.2f} {fails[name]:7d}")
        tg_pid = procs[1].pid
        cpu = asyncio.run(cpu_per_request(tg_pid, {k: targets[k] for k in ("thinkgate", *front_ends)}, args.n1))
        print("\ngateway CPU per request (c1, " + str(args.n1) + " requests): "
              + ", ".join(f"{k} {v:.2f} ms" for k, v in cpu.items()))
        added_chat = pct(lat1["thinkgate"], 0.5) - direct_p50
        for name in front_ends:
            added = pct(lat1[name], 0.5) - direct_p50
            print(f"\n{name} vs chat: added p50 {added - added_chat:+.2f} ms at c1, "
                  f"c32 throughput {statistics.median(rps[name]) / statistics.median(rps['thinkgate']):.2f}x, "
                  f"CPU per request {cpu[name] - cpu['thinkgate']:+.2f} ms")
        if "litellm-proxy" in targets:
            ratio = statistics.median(rps["thinkgate"]) / statistics.median(rps["litellm-proxy"])
            added_tg = pct(lat1["thinkgate"], 0.5) - direct_p50
            added_lp = pct(lat1["litellm-proxy"], 0.5) - direct_p50
            print(f"\nthroughput thinkgate / litellm-proxy at c32: {ratio:.2f}x")
            print(f"added p50 at c1: thinkgate {added_tg:.2f} ms vs litellm-proxy {added_lp:.2f} ms "
                  f"({added_lp / added_tg if added_tg > 0 else float('inf'):.1f}x less)")
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
