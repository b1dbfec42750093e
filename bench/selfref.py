"""Self-Ref figures: calibration results and the scorer's own CPU cost.

    .venv/bin/python bench/selfref.py                          # scorer microbench only
    .venv/bin/python bench/selfref.py --results out/selfref-smollm2.json
    .venv/bin/python bench/selfref.py --gateway http://127.0.0.1:8000   # streaming cost

With --results (a `thinkgate calibrate selfref --out` file) it prints AUROC per
mode, the chosen threshold, escalation rate and kept-answer accuracy, and
re-times every mode on responses shaped like the recorded ones. The microbench
times `policies.selfref.confidence` (pure Python) on synthetic chat choices of
growing length with 5 alternatives per token, so it can be compared with the
generation time it sits behind. With --gateway (a running `thinkgate serve`
on the embedded default) it measures what buffering costs a streaming client:
time to first content byte on the pinned `fast` alias (streamed straight
through, no Self-Ref) against `auto` forced to the fast route with Self-Ref at
threshold 0 (buffered until the confidence is known, never escalated).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import selfref  # noqa: E402


def synthetic_choice(n_tokens: int, top: int = 5, seed: int = 0, tag: bool = True) -> dict:
    rng = random.Random(seed)
    words = ["The", " answer", " is", " we", " add", " then", " so", " total", " =", " and", ".", "\n"]
    content = []
    for i in range(n_tokens):
        tok = rng.choice(words) if i % 7 else f" {rng.randint(0, 999)}"
        lp = math.log(rng.uniform(0.05, 1.0))
        alts = [{"token": tok, "logprob": lp}] + [
            {"token": rng.choice(words), "logprob": lp - rng.uniform(0.1, 5)} for _ in range(top - 1)
        ]
        content.append({"token": tok, "logprob": lp, "bytes": None, "top_logprobs": alts})
    if tag:
        content += [
            {"token": " <", "logprob": -0.01, "top_logprobs": [{"token": " <", "logprob": -0.01}]},
            {"token": "CN", "logprob": math.log(0.7), "top_logprobs": [{"token": "CN", "logprob": math.log(0.7)}, {"token": "UN", "logprob": math.log(0.25)}]},
            {"token": ">", "logprob": 0.0, "top_logprobs": [{"token": ">", "logprob": 0.0}]},
        ]
    text = "".join(c["token"] for c in content)
    return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": {"content": content}}


def time_us(fn, min_time: float = 0.2) -> float:
    """Median CPU microseconds per call over batches that run >= min_time/5 each."""
    n, t = 1, 0.0
    while t < min_time / 5:
        t0 = time.process_time()
        for _ in range(n):
            fn()
        t = time.process_time() - t0
        n *= 2
    n //= 2
    runs = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        runs.append((time.process_time() - t0) / n * 1e6)
    return statistics.median(runs)


def microbench(lengths: list[int]) -> None:
    print(f"scorer CPU time per response, microseconds (pure Python, top_logprobs=5), {sys.version.split()[0]}")
    print(f"{'tokens':>7}" + "".join(f"{m:>18}" for m in selfref.MODES))
    for n in lengths:
        c = synthetic_choice(n)
        cells = [time_us(lambda m=m: selfref.confidence(c, m)) for m in selfref.MODES]
        print(f"{n:>7}" + "".join(f"{x:>18.1f}" for x in cells))


def summarise(path: str, targets: list[float], min_kept: int) -> None:
    from calibrate.selfref_analysis import analyse
    from calibrate.selfref_data import Record

    saved = json.loads(Path(path).read_text())
    records = [Record(**x) for x in saved["records"]]
    print(f"results: {path}")
    print(f"model {saved.get('model')} at {saved.get('base_url')}; data {saved.get('data')}")
    for target in targets:
        r = analyse(records, target, saved.get("on_missing", "trust"), min_kept=min_kept)
        print(
            f"n={r['n']} errors={r['errors']}; fast-model accuracy {100 * (r['accuracy'] or 0):.1f}%; "
            f"target >= {100 * target:.0f}% kept correct over >= {min_kept} kept"
        )
        print(f"{'mode':<17}{'AUROC':>7}{'95% CI':>12}{'cover':>7}{'threshold':>11}{'escalate':>10}{'kept acc':>10}")
        for mode, m in r["modes"].items():
            auc = "-" if m["auroc"] is None else f"{m['auroc']:.3f}"
            ci = "-" if not m["auroc_ci95"] else f"{m['auroc_ci95'][0]:.2f}-{m['auroc_ci95'][1]:.2f}"
            thr = "-" if m["threshold"] is None else ("always" if m["threshold"] > 1 else f"{m['threshold']:.4f}")
            esc = "-" if m["escalation_rate"] is None else f"{100 * m['escalation_rate']:.1f}%"
            kept = "-" if m["kept_accuracy"] is None else f"{100 * m['kept_accuracy']:.1f}%"
            print(f"{mode:<17}{auc:>7}{ci:>12}{100 * m['coverage']:>6.0f}%{thr:>11}{esc:>10}{kept:>10}")
        rec = r.get("recommended")
        print(f"recommended: mode={rec['mode']} threshold={rec['threshold']:.4f}" if rec else "recommended: none (target unreachable: escalate everything)")
        print()
    r = saved
    toks = [x["completion_tokens"] for x in r["records"] if x.get("completion_tokens")]
    gen = r.get("generation_s_median")
    if r.get("score_us_median") is not None:
        print(
            f"measured during the run: scoring (all 5 modes) median {r['score_us_median']:.0f} us, p99 {r['score_us_p99']:.0f} us"
            + (f"; generation median {1000 * gen:.0f} ms -> {100 * r['score_us_median'] / 1e6 / gen:.3f}% of it" if gen else "")
        )
    if toks:
        med = int(statistics.median(toks))
        c = synthetic_choice(med)
        per = time_us(lambda: [selfref.confidence(c, m) for m in selfref.MODES])
        print(f"re-timed at the median response length ({med} tokens): all 5 modes {per:.0f} us")


def ttft(url: str, model: str, prompt: str, headers: dict[str, str], max_tokens: int) -> tuple[float, float]:
    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    first = None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if first is None and line.startswith("data: {") and '"content"' in line:
                first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return (first if first is not None else total), total


def stream_cost(url: str, n: int, max_tokens: int) -> None:
    nocache = {"x-thinkgate-cache-control": "no-cache, no-store"}
    selfref_on = {**nocache, "x-thinkgate-force-route": "fast", "x-thinkgate-selfref-threshold": "0"}
    rows = {"direct": [], "buffered": []}
    for i in range(n):
        prompt = f"What is {12 + i} + {29 + 3 * i}?"
        rows["direct"].append(ttft(url, "fast", prompt, nocache, max_tokens))
        rows["buffered"].append(ttft(url, "auto", prompt, selfref_on, max_tokens))
    print(f"streaming through {url}, {n} prompts, max_tokens={max_tokens} (median seconds)")
    for name, xs in rows.items():
        print(f"  {name:<9} first content {statistics.median(x[0] for x in xs):.2f}   complete {statistics.median(x[1] for x in xs):.2f}")
    extra = statistics.median(b[0] - d[0] for d, b in zip(rows["direct"], rows["buffered"]))
    print(f"  buffering adds {extra:.2f} s to the first byte (about the fast answer's generation time); total time is unchanged")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", help="a `thinkgate calibrate selfref --out` JSON file")
    p.add_argument("--lengths", default="16,64,256,1024")
    p.add_argument("--targets", default="0.9,0.8", help="kept-precision targets to report with --results")
    p.add_argument("--min-kept", type=int, default=10)
    p.add_argument("--gateway", help="base URL of a running `thinkgate serve` (embedded default) to time streaming")
    p.add_argument("--n", type=int, default=5, help="prompts for --gateway")
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args(argv)
    if args.gateway:
        stream_cost(args.gateway.rstrip("/"), args.n, args.max_tokens)
        print()
    if args.results:
        summarise(args.results, [float(x) for x in args.targets.split(",")], args.min_kept)
        print()
    microbench([int(x) for x in args.lengths.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
