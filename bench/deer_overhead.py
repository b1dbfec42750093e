"""The DEER controller's own overhead in concurrent mode (the vLLM path),
measured against the scripted OpenAI-compatible server used by the tests, so
that model speed plays no part:

    python bench/deer_overhead.py [--runs 30] [--token-delay 0.005]

Per probe: time from the transition's stream event arriving to the probe
request being sent, and the controller's CPU (probe prompt + payload build,
response parse, policy decision). Per request: wall time from the confident
probe's reply to the first answer token (closing the thinking stream and
opening the answer stream).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.config import DeerSettings
from router.deer.upstream import DeerUpstream
from router.upstreams.base import CallContext
from tests.router.scripted_openai import ProbeReply, Script, ScriptedServer

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
STEP = ["Some", " careful", " thought", " about", " the", " sum", ".\n"]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def main_async(args: argparse.Namespace) -> None:
    thinking = (STEP + ["Wait"]) * args.probes + STEP * 20
    probes = [ProbeReply(probs=[0.5, 0.4, 0.4])] * (args.probes - 1) + [ProbeReply(probs=[0.5, 0.99, 0.99])]
    detect: list[float] = []
    cpu: list[float] = []
    switch: list[float] = []
    settings = DeerSettings(template="local", chat_template=TEMPLATE, probe_mode=args.mode)
    for _ in range(args.runs):
        async with ScriptedServer(Script(thinking, probes=list(probes), token_delay=args.token_delay)) as server:
            up = DeerUpstream("reasoning", "scripted", server.api_base, settings)
            ctx = CallContext()
            body = {"messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 1000}
            t_last_reasoning = None
            async for chunk in up.stream(body, ctx):
                delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
                if delta.get("reasoning_content"):
                    t_last_reasoning = time.perf_counter()
                if delta.get("content") and t_last_reasoning is not None:
                    switch.append((time.perf_counter() - t_last_reasoning) * 1000)
                    t_last_reasoning = None
            await up.close()
            assert ctx.deer is not None and ctx.deer.reason == "confident", ctx.deer
            for t in ctx.extra["deer_trace"]:
                if t.get("verdict") == "abandoned":  # thinking ended first: never sent a verdict
                    continue
                detect.append(t["detect_to_send_ms"])
                cpu.append(t["cpu_ms"])
    print(f"DEER controller overhead, {args.mode} mode, {args.runs} requests x {args.probes} probes (scripted server)")
    print(f"  transition -> probe sent: median {statistics.median(detect):.3f} ms, p95 {pct(detect, 0.95):.3f} ms")
    print(f"  controller CPU per probe: median {statistics.median(cpu):.3f} ms, p95 {pct(cpu, 0.95):.3f} ms")
    print(
        f"  last reasoning chunk -> first answer chunk (incl. probe round trip): median {statistics.median(switch):.2f} ms"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--probes", type=int, default=3)
    p.add_argument("--token-delay", type=float, default=0.005)
    p.add_argument("--mode", choices=["concurrent", "sequential"], default="concurrent")
    asyncio.run(main_async(p.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
