"""What every calibrate command shares: the data and threshold-target argument
groups, the training config built from the arguments, and the output helpers
(progress to stderr, results to stdout as strict JSON). Also used by
calibrate/joint.py and calibrate/transfer.py."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _out(line: str = "") -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _json(obj: Any) -> str:
    """Strict JSON: NaN (e.g. APGR when the strong model is not better) -> null."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and x != x:
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), allow_nan=False)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outcomes", action="append", required=True, metavar="FILE",
                   help="outcome JSONL, or the gateway's outcome log (its JSONL or redis://host:port/0?stream=KEY); repeatable")
    p.add_argument("--tenant", help="outcome logs: only this tenant's records")
    p.add_argument("--embedder", default="auto", choices=["auto", "onnx", "onnx-fp32", "torch", "hash", "static"],
                   help="static: the model2vec distillation of MiniLM (classifier.encoder static)")
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache (~/.cache/thinkgate)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and the fit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_target_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("threshold target (one)")
    g.add_argument("--target-share", type=float, help="share of prompts sent to the reasoning route (0..1)")
    g.add_argument("--target-quality", type=float, help="absolute mean quality to reach (e.g. 0.82)")
    g.add_argument("--target-pgr", type=float, help="share of the fast-to-strong quality gap to recover (0..1)")
    g.add_argument("--max-cost", type=float, help="mean cost per request, with --fast-cost/--strong-cost")
    g.add_argument("--fast-cost", type=float, default=1.0, help="cost of one fast request (any unit)")
    g.add_argument("--strong-cost", type=float, default=10.0, help="cost of one reasoning request (same unit)")


def _targets(args: argparse.Namespace, default_pgr: float | None = None) -> dict[str, Any]:
    t = {k: getattr(args, k) for k in ("target_share", "target_quality", "target_pgr", "max_cost")}
    if all(v is None for v in t.values()) and default_pgr is not None:
        t["target_pgr"] = default_pgr
    return {**t, "fast_cost": args.fast_cost, "strong_cost": args.strong_cost}


def _candidates() -> tuple[str, ...]:
    from calibrate.train import CANDIDATES

    return CANDIDATES


def _config(args: argparse.Namespace, **kw: Any) -> Any:
    from calibrate import train

    if getattr(args, "candidates", None):
        kw["candidates"] = tuple(c.strip() for c in args.candidates.split(",") if c.strip())
        unknown = set(kw["candidates"]) - set(train.CANDIDATES)
        if unknown or not kw["candidates"]:
            raise ValueError(f"--candidates: unknown {sorted(unknown)} (known: {', '.join(train.CANDIDATES)})")
    return train.TrainConfig(seed=args.seed, **kw)
