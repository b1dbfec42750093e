"""`thinkgate calibrate selfref`: choose the Self-Ref confidence threshold.

Runs the configured fast model (any OpenAI-compatible server) over a labelled
set, grades each answer, scores it with every confidence mode of
`policies.selfref`, and picks, per mode, the threshold that escalates the
fewest prompts while at least `--target-precision` of the answers kept on the
fast route are correct. Prints AUROC per mode and the precision/escalation
trade-off table, writes a JSON result and a plot.

    thinkgate calibrate selfref --base-url http://127.0.0.1:8080/v1 --model smollm2 \\
        --arith 300 --target-precision 0.9 --out out/selfref.json --plot out/selfref.png

Data: `--data FILE` (JSONL with problem|question|prompt and answer, e.g.
../shared/data/math/gsm8k.jsonl) for real fast models, or `--arith N` for a
deterministic arithmetic set of growing size (tiny local models get about half
of it right, which is what a threshold needs to be calibrated on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from policies import selfref

ALL_MODES = selfref.MODES
CONFIDENCE_TOKEN_INSTRUCTION = (
    "After your answer, write <CN> if you are confident it is correct, otherwise write <UN>."
)
MATH_INSTRUCTION = "Solve the problem. End with a line of the form 'The answer is N.'"
ARITH_INSTRUCTION = "Answer with just the number."


@dataclass
class Item:
    id: str
    prompt: str
    answer: str


@dataclass
class Record:
    id: str
    gold: str
    output: str = ""
    pred: str | None = None
    correct: bool = False
    conf: dict[str, float | None] = field(default_factory=dict)
    completion_tokens: int = 0
    latency_s: float = 0.0
    score_us: float = 0.0  # CPU time to score this response in every mode
    error: str | None = None


# ---------------------------------------------------------------- data


def arith_items(n: int, seed: int = 0, max_operand: int = 40) -> list[Item]:
    """Deterministic arithmetic prompts whose operands grow with the index, from
    single digits up to `max_operand` (products use operands a quarter as big).

    The default range suits SmolLM2-135M: it gets single digits mostly right and
    two-digit sums mostly wrong, about half right overall."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        hi = 4 + round((max_operand - 4) * i / max(n - 1, 1))
        op = rng.choice("+-*")
        if op == "*":
            hi = max(4, hi // 4)
        a, b = rng.randint(0, hi), rng.randint(0, hi)
        if op == "-" and b > a:
            a, b = b, a
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        items.append(Item(f"arith-{seed}-{i}", f"What is {a} {op} {b}?", str(value)))
    return items


def load_items(path: str | Path, limit: int | None = None, seed: int = 0) -> list[Item]:
    rows = []
    with open(path) as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            prompt = row.get("problem") or row.get("question") or row.get("prompt")
            if not isinstance(prompt, str) or "answer" not in row:
                raise ValueError(f"{path}:{n + 1}: needs 'problem' (or 'question'/'prompt') and 'answer'")
            rows.append(Item(str(row.get("id", f"row-{n}")), prompt, str(row["answer"])))
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    return rows


# ---------------------------------------------------------------- grading


def normalize(answer: str) -> str:
    s = answer.strip().strip("$").replace(",", "").replace("\\!", "").strip()
    s = s.rstrip(".").strip()
    try:
        x = float(s)
    except ValueError:
        return re.sub(r"\s+", " ", s.lower())
    if math.isfinite(x) and x == int(x):
        return str(int(x))
    return repr(x)


def grade(output: str, gold: str) -> tuple[str | None, bool]:
    pred = selfref.answer_text(selfref.strip_confidence_token(output))
    if pred is None:
        return None, False
    return pred, normalize(pred) == normalize(gold)


# ---------------------------------------------------------------- metrics (pure)


def auroc(scores: list[float | None], labels: list[bool]) -> float | None:
    """Area under the ROC curve of `scores` predicting `labels` (ties count half);
    items without a score are left out; None when one class is empty."""
    pairs = [(s, y) for s, y in zip(scores, labels) if s is not None]
    pos = sum(1 for _, y in pairs if y)
    neg = len(pairs) - pos
    if pos == 0 or neg == 0:
        return None
    pairs.sort(key=lambda p: p[0])
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2  # ranks are 1-based
        rank_sum += avg_rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def auroc_ci(scores: list[float | None], labels: list[bool], n_boot: int = 500, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile-bootstrap interval of `auroc` (resampling prompts)."""
    pairs = [(s, y) for s, y in zip(scores, labels) if s is not None]
    if not pairs:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(n_boot):
        sample = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        a = auroc([s for s, _ in sample], [y for _, y in sample])
        if a is not None:
            values.append(a)
    if len(values) < n_boot // 2:
        return None
    return selfref.quantile(values, 0.025), selfref.quantile(values, 0.975)


@dataclass
class Point:
    threshold: float
    escalation_rate: float
    kept: int
    kept_accuracy: float | None  # None when nothing is kept


def tradeoff(scores: list[float | None], labels: list[bool], on_missing: str = "trust") -> list[Point]:
    """Every distinct operating point, from escalating nothing to everything.

    An answer is kept when `not should_escalate(score, threshold, on_missing)`.
    """
    n = len(labels)
    if n == 0:
        return []
    cands = sorted({s for s in scores if s is not None})
    thresholds = [0.0] + [c for c in cands if c > 0.0] + [1.0 + 1e-9]
    # just above each score too, so ties can be cut on both sides
    out = []
    for t in thresholds:
        kept = [y for s, y in zip(scores, labels) if not selfref.should_escalate(s, t, on_missing)]
        acc = sum(kept) / len(kept) if kept else None
        out.append(Point(t, 1 - len(kept) / n, len(kept), acc))
    return out


def choose(points: list[Point], target: float, min_kept: int = 1) -> Point:
    """Fewest escalations with kept accuracy >= target over at least `min_kept`
    kept answers (a guard against a target met by two lucky answers); everything
    escalated if no point reaches it."""
    ok = [p for p in points if p.kept_accuracy is not None and p.kept_accuracy >= target and p.kept >= min_kept]
    if ok:
        return min(ok, key=lambda p: (p.escalation_rate, p.threshold))
    return Point(1.0 + 1e-9, 1.0, 0, None)


def table_rows(points: list[Point], steps: int = 10) -> list[Point]:
    """The operating point closest to (at or below) each escalation rate 0, 10, ..., 100 %."""
    rows = []
    for k in range(steps + 1):
        goal = k / steps
        below = [p for p in points if p.escalation_rate <= goal + 1e-12]
        if below:
            rows.append(max(below, key=lambda p: p.escalation_rate))
    dedup: list[Point] = []
    for p in rows:
        if not dedup or dedup[-1] is not p:
            dedup.append(p)
    return dedup


def analyse(
    records: list[Record], target: float, on_missing: str = "trust", modes=ALL_MODES, min_kept: int = 1
) -> dict[str, Any]:
    done = [r for r in records if r.error is None]
    labels = [r.correct for r in done]
    result: dict[str, Any] = {
        "n": len(done),
        "errors": len(records) - len(done),
        "accuracy": sum(labels) / len(labels) if labels else None,
        "target_precision": target,
        "on_missing": on_missing,
        "min_kept": min_kept,
        "modes": {},
    }
    for mode in modes:
        scores = [r.conf.get(mode) for r in done]
        covered = sum(s is not None for s in scores)
        points = tradeoff(scores, labels, on_missing)
        pick = choose(points, target, min_kept) if points else None
        result["modes"][mode] = {
            "auroc": auroc(scores, labels),
            "auroc_ci95": auroc_ci(scores, labels),
            "coverage": covered / len(done) if done else 0.0,
            "threshold": None if pick is None else pick.threshold,
            "escalation_rate": None if pick is None else pick.escalation_rate,
            "kept_accuracy": None if pick is None else pick.kept_accuracy,
            "kept": None if pick is None else pick.kept,
            "table": [asdict(p) for p in table_rows(points)],
            "curve": [asdict(p) for p in points],
        }
    usable = {
        m: v
        for m, v in result["modes"].items()
        if v["auroc"] is not None and v["coverage"] > 0.5 and v["escalation_rate"] is not None and v["escalation_rate"] < 1
    }
    if usable:
        best = min(usable, key=lambda m: (usable[m]["escalation_rate"], -(usable[m]["auroc"] or 0)))
        result["recommended"] = {"mode": best, "threshold": usable[best]["threshold"]}
    else:
        result["recommended"] = None
    us = [r.score_us for r in done if r.score_us > 0]
    lat = [r.latency_s for r in done if r.latency_s > 0]
    result["score_us_median"] = statistics.median(us) if us else None
    result["score_us_p99"] = _q(us, 0.99)
    result["generation_s_median"] = statistics.median(lat) if lat else None
    return result


def _q(xs: list[float], q: float) -> float | None:
    return selfref.quantile(xs, q) if xs else None


def format_report(result: dict[str, Any]) -> str:
    lines = [
        f"answers: {result['n']} (errors {result['errors']}), fast-model accuracy: {_pct(result['accuracy'])}",
        f"target: >= {_pct(result['target_precision'])} of kept fast answers correct, over >= {result.get('min_kept', 1)} kept"
        f" (missing confidence: {result['on_missing']})",
        "",
        f"{'mode':<17}{'AUROC':>7}{'95% CI':>14}{'cover':>7}{'threshold':>11}{'escalate':>10}{'kept acc':>10}",
    ]
    for mode, m in result["modes"].items():
        thr = "-" if m["threshold"] is None else ("always" if m["threshold"] > 1 else f"{m['threshold']:.4f}")
        lines.append(
            f"{mode:<17}{_num(m['auroc']):>7}{_ci(m.get('auroc_ci95')):>14}{_pct(m['coverage']):>7}{thr:>11}"
            f"{_pct(m['escalation_rate']):>10}{_pct(m['kept_accuracy']):>10}"
        )
    for mode, m in result["modes"].items():
        if m["auroc"] is None:
            continue
        lines += ["", f"trade-off, {mode}:", f"  {'escalate':>9}{'threshold':>11}{'kept':>6}{'kept acc':>10}"]
        for p in m["table"]:
            thr = "always" if p["threshold"] > 1 else f"{p['threshold']:.4f}"
            lines.append(f"  {_pct(p['escalation_rate']):>9}{thr:>11}{p['kept']:>6}{_pct(p['kept_accuracy']):>10}")
    rec = result.get("recommended")
    lines.append("")
    if rec:
        lines.append(f"recommended: selfref.mode={rec['mode']} selfref.threshold={rec['threshold']:.4f}")
    else:
        lines.append(
            "recommended: none: no mode keeps any fast answers at this target; escalate everything "
            "(selfref.threshold above 1) or lower --target-precision"
        )
    if result.get("score_us_median") is not None:
        gen = result.get("generation_s_median")
        lines.append(
            f"scoring CPU time per response (all modes): median {result['score_us_median']:.0f} us, "
            f"p99 {result['score_us_p99']:.0f} us" + (f"; generation median {gen * 1000:.0f} ms" if gen else "")
        )
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(ci: Any) -> str:
    return "-" if not ci else f"{ci[0]:.2f}-{ci[1]:.2f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def plot(result: dict[str, Any], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, m in result["modes"].items():
        pts = [p for p in m["curve"] if p["kept_accuracy"] is not None]
        if m["auroc"] is None or not pts:
            continue
        (line,) = ax.plot(
            [100 * p["escalation_rate"] for p in pts],
            [100 * p["kept_accuracy"] for p in pts],
            label=f"{mode} (AUROC {m['auroc']:.2f})",
        )
        if m["kept_accuracy"] is not None:  # the chosen threshold
            ax.scatter([100 * m["escalation_rate"]], [100 * m["kept_accuracy"]], s=30, color=line.get_color(), zorder=3)
    ax.axhline(100 * result["target_precision"], color="grey", linestyle="--", linewidth=1, label="target")
    ax.set_xlabel("escalated to the reasoning route (%)")
    ax.set_ylabel("kept fast answers correct (%)")
    ax.set_title(title or "Self-Ref: precision vs escalation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- running the model


def score_all(choice: dict[str, Any], modes=ALL_MODES, quantile: float = 0.1) -> tuple[dict[str, float | None], float]:
    t0 = time.process_time_ns()
    conf = {m: selfref.confidence(choice, m, quantile=quantile) for m in modes}
    return conf, (time.process_time_ns() - t0) / 1000


async def _ask(client: Any, url: str, body: dict[str, Any], retries: int = 2) -> dict[str, Any]:
    import httpx

    for attempt in range(retries + 1):
        try:
            r = await client.post(url, json=body)
            if r.status_code >= 500 and attempt < retries:
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            r.raise_for_status()
            return r.json()
        except (httpx.TransportError, httpx.TimeoutException):
            if attempt == retries:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
    raise RuntimeError("unreachable")


def build_body(item: Item, args: argparse.Namespace) -> dict[str, Any]:
    instruction = ARITH_INSTRUCTION if args.arith else MATH_INSTRUCTION
    if args.ask_confidence_token:
        instruction += " " + CONFIDENCE_TOKEN_INSTRUCTION
    body: dict[str, Any] = {
        "model": args.model,
        "messages": [{"role": "user", "content": f"{item.prompt}\n{instruction}"}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": args.top_logprobs,
    }
    if args.seed is not None:
        body["seed"] = args.seed
    return body


async def collect(items: list[Item], args: argparse.Namespace, transport: Any = None) -> list[Record]:
    import httpx
    from tqdm import tqdm

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    url = args.base_url.rstrip("/") + "/chat/completions"
    sem = asyncio.Semaphore(args.concurrency)
    bar = tqdm(total=len(items), desc="selfref", file=sys.stderr, disable=args.quiet)
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=args.timeout, headers=headers, limits=limits, transport=transport) as client:

        async def one(item: Item) -> Record:
            rec = Record(item.id, item.answer)
            async with sem:
                t0 = time.perf_counter()
                try:
                    resp = await _ask(client, url, build_body(item, args))
                except Exception as e:  # a failed item is recorded, not fatal
                    rec.error = f"{type(e).__name__}: {e}"[:300]
                    bar.update()
                    return rec
                rec.latency_s = time.perf_counter() - t0
            choice = (resp.get("choices") or [{}])[0]
            rec.output = (choice.get("message") or {}).get("content") or ""
            rec.completion_tokens = int((resp.get("usage") or {}).get("completion_tokens") or 0)
            rec.conf, rec.score_us = score_all(choice, quantile=args.quantile)
            rec.pred, rec.correct = grade(rec.output, item.answer)
            bar.update()
            return rec

        records = await asyncio.gather(*(one(it) for it in items))
    bar.close()
    return list(records)


def configured_fast_model(config_path: str | None, alias: str = "auto") -> tuple[str, str, Any]:
    """(base URL, model id, stop callback or None) of the fast model of `alias`;
    a local GGUF model is started on a llama.cpp server for the run."""
    from router import config
    from router.upstreams.llamacpp import LlamaServer, locate_gguf

    settings = config.load(config_path)
    route = settings.routes.get(alias)
    if route is None:
        raise ValueError(f"no route alias '{alias}' in the configuration")
    name = route.pin or route.fast
    ms = settings.models[name]
    if ms.api_base:
        return ms.api_base, ms.model or name, None
    if ms.provider == "llamacpp" and ms.gguf:
        server = LlamaServer(locate_gguf(ms.gguf), n_ctx=ms.n_ctx, n_threads=ms.n_threads)
        print(f"starting {server.gguf.name} on llama.cpp ...", file=sys.stderr)
        server.start()
        return server.api_base, ms.model or name, server.stop
    raise ValueError(f"model '{name}' (provider {ms.provider}) has no api_base; pass --base-url and --model")


# ---------------------------------------------------------------- CLI


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("selfref", help="calibrate the Self-Ref escalation threshold", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)
    p.set_defaults(func=run)
    return p


def configure(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="labelled JSONL (problem|question|prompt, answer)")
    src.add_argument("--arith", type=int, metavar="N", help="generate N arithmetic prompts of growing size")
    src.add_argument("--from-results", metavar="FILE", help="re-analyse a previous --out file without calling a model")
    p.add_argument("--base-url", help="OpenAI base URL, e.g. http://127.0.0.1:8080/v1 (default: the configured fast model)")
    p.add_argument("--model", help="model id sent to the server (default: the configured fast model's)")
    p.add_argument("--config", help="thinkgate YAML whose fast model is calibrated (default: the embedded default)")
    p.add_argument("--alias", default="auto", help="route alias whose fast model is used with --config")
    p.add_argument("--api-key", default=None, help="bearer token (default: none)")
    p.add_argument("--limit", type=int, default=None, help="sample this many rows of --data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target-precision", type=float, default=0.9)
    p.add_argument("--on-missing", choices=["trust", "escalate"], default="trust")
    p.add_argument("--min-kept", type=int, default=10, help="a threshold must keep at least this many answers")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--top-logprobs", type=int, default=5)
    p.add_argument("--quantile", type=float, default=0.1)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--ask-confidence-token", action="store_true", help="ask the model to end with <CN>/<UN>")
    p.add_argument("--out", help="write the JSON result here")
    p.add_argument("--plot", help="save the precision/escalation plot here (PNG)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, transport: Any = None) -> int:
    """Run the calibration; `transport` (an httpx transport) replaces the network in tests."""
    if args.from_results:
        saved = json.loads(Path(args.from_results).read_text())
        records = [Record(**r) for r in saved["records"]]
        meta = {k: saved.get(k) for k in ("model", "base_url", "data")}
    else:
        items = arith_items(args.arith, args.seed) if args.arith else load_items(args.data, args.limit, args.seed)
        stop = None
        if not args.base_url:
            try:
                args.base_url, model, stop = configured_fast_model(args.config, args.alias)
            except Exception as e:  # a config or start-up problem: one clear line
                print(f"calibrate selfref: {e}", file=sys.stderr)
                return 2
            args.model = args.model or model
        if not args.model:
            print("calibrate selfref: --model is required with --base-url", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        try:
            records = asyncio.run(collect(items, args, transport))
        finally:
            if stop is not None:
                stop()
        meta = {
            "model": args.model,
            "base_url": args.base_url,
            "data": f"arith:{args.arith}:seed={args.seed}" if args.arith else str(args.data),
            "wall_s": round(time.perf_counter() - t0, 2),
        }
    result = {**meta, **analyse(records, args.target_precision, args.on_missing, min_kept=args.min_kept)}
    print(format_report(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({**result, "records": [asdict(r) for r in records]}, indent=1))
    if args.plot:
        plot(result, args.plot, title=f"Self-Ref calibration: {meta.get('model') or ''}")
    failed = result["errors"]
    return 1 if failed and failed == len(records) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thinkgate calibrate selfref", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
