"""Figures of outcome tables written by `thinkgate calibrate collect`: size, each
model's mean quality, the strong-minus-fast gap with a paired bootstrap 95 % CI,
the oracle (best of both), cost, tokens and median latencies; and, with
--log, collect's own summary (throughput, estimate vs spend).

    python bench/outcome_table.py ../tables/gsm8k-steps-smollm2-thinking.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path


def figures(path: Path, seed: int = 0, draws: int = 2000) -> dict:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    missing = path.with_name(path.name.removesuffix(".jsonl") + ".missing.jsonl")
    n_missing = sum(1 for x in missing.read_text().splitlines() if x.strip()) if missing.exists() else 0
    fast = [float(r["fast"]) for r in rows]
    strong = [float(r["strong"]) for r in rows]
    gaps = [s - f for f, s in zip(fast, strong)]
    rng = random.Random(seed)
    boot = sorted(statistics.fmean(rng.choices(gaps, k=len(gaps))) for _ in range(draws))
    return {
        "table": path.name,
        "n": len(rows),
        "missing": n_missing,
        "q_fast": round(statistics.fmean(fast), 4),
        "q_strong": round(statistics.fmean(strong), 4),
        "gap": round(statistics.fmean(gaps), 4),
        "gap_ci95": [round(boot[int(0.025 * draws)], 4), round(boot[int(0.975 * draws) - 1], 4)],
        "strong_only": sum(1 for f, s in zip(fast, strong) if s > f),
        "fast_only": sum(1 for f, s in zip(fast, strong) if f > s),
        "oracle": round(statistics.fmean(max(f, s) for f, s in zip(fast, strong)), 4),
        "fast_cost": round(sum(r["fast_cost"] for r in rows), 6),
        "strong_cost": round(sum(r["strong_cost"] for r in rows), 6),
        "median_tokens": {k: statistics.median(r[f"{k}_tokens"] for r in rows) for k in ("fast", "strong")},
        "median_latency_s": {k: round(statistics.median(r["latency"][k] for r in rows), 2) for k in ("fast", "strong")},
        "with_confidence": sum(1 for r in rows if r.get("fast_confidence") is not None),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="+", type=Path)
    args = p.parse_args(argv)
    for t in args.tables:
        print(json.dumps(figures(t)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
