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

# The docstring above is the command's --help text. This module runs the model and
# the command line; the data and grading live in calibrate.selfref_data, the metrics
# and threshold choice in calibrate.selfref_analysis, the report and plot in
# calibrate.selfref_report.

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from calibrate.selfref_analysis import ALL_MODES, analyse
from calibrate.selfref_data import Item, Record, arith_items, grade, load_items
from calibrate.selfref_prefix import compare, format_prefix, prefix_scores
from calibrate.selfref_report import format_report, plot
from policies import selfref

CONFIDENCE_TOKEN_INSTRUCTION = (
    "After your answer, write <CN> if you are confident it is correct, otherwise write <UN>."
)
MATH_INSTRUCTION = "Solve the problem. End with a line of the form 'The answer is N.'"
ARITH_INSTRUCTION = "Answer with just the number."
# --instruction work: answers long enough that a K-token prefix is a real prefix
WORK_INSTRUCTION = "Work it out step by step, then end with a line of the form 'The answer is N.'"


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
    if getattr(args, "instruction", "default") == "work":
        instruction = WORK_INSTRUCTION
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
            if getattr(args, "prefix", None):
                rec.conf.update(prefix_scores(choice, args.prefix, args.quantile))
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


def _ks(value: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in value.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--prefix takes token counts like 8,16,32, not {value!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError("--prefix: token counts must be at least 1")
    return ks


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
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    p.add_argument("--target-precision", type=float, default=0.9, help="share of kept fast answers that must be right")
    p.add_argument("--on-missing", choices=["trust", "escalate"], default="trust",
                   help="a fast answer without logprobs: keep it (trust) or escalate it")
    p.add_argument("--min-kept", type=int, default=10, help="a threshold must keep at least this many answers")
    p.add_argument("--max-tokens", type=int, default=256, help="max_tokens of each fast answer")
    p.add_argument("--top-logprobs", type=int, default=5, help="alternatives per token (confidence_token mode reads them)")
    p.add_argument("--quantile", type=float, default=0.1, help="the token-probability quantile quantile_prob scores")
    p.add_argument("--concurrency", type=int, default=4, help="prompts in flight")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per model call")
    p.add_argument("--ask-confidence-token", action="store_true", help="ask the model to end with <CN>/<UN>")
    p.add_argument("--instruction", choices=["default", "work"], default="default",
                   help="work: ask for the working and a final line (longer answers, for --prefix)")
    p.add_argument("--prefix", type=_ks, default=None, metavar="K,K,...",
                   help="also score the first K tokens (selfref.stream prefix:K) and compare AUROC, e.g. 8,16,32")
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
    if args.prefix:
        result["prefix"] = compare(records, args.prefix)
        print("\n" + format_prefix(result["prefix"]))
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
