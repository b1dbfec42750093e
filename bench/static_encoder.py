"""CPU per prompt of the classifier's encoders: MiniLM (ONNX int8, the serving
path) against its model2vec static distillation (classifier.encoder static),
one prompt at a time on one thread, on real prompts of each set.

    .venv/bin/python bench/static_encoder.py [--count 200] [--json]

Prints the p50/p90 ms per prompt of each encoder and their ratio, per prompt
set (Arena-Hard, MT-Bench first turns, GSM8K, MMLU), all from one run. The
static model is distilled on first use (router/embedding/static.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from routing import real_sets  # noqa: E402


def time_one_by_one(encoder, texts: list[str], warm: int = 5) -> np.ndarray:
    for t in texts[:warm]:
        encoder.encode([t])
    ms = []
    for t in texts:
        t0 = time.thread_time()  # CPU time of this thread: less disturbed by a busy machine than wall time
        encoder.encode([t])
        ms.append((time.thread_time() - t0) * 1000)
    return np.asarray(ms)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200, help="prompts per set")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("THINKGATE_ORT_THREADS", "1")
    from router.embedding.encoders import OnnxEncoder
    from router.embedding.static import StaticEncoder

    minilm, static = OnnxEncoder(threads=1), StaticEncoder()
    out = {}
    for name, texts in real_sets(args.count).items():
        a, b = time_one_by_one(minilm, texts), time_one_by_one(static, texts)
        out[name] = {"n": len(texts), "minilm_p50_ms": float(np.median(a)), "minilm_p90_ms": float(np.quantile(a, 0.9)),
                     "static_p50_ms": float(np.median(b)), "static_p90_ms": float(np.quantile(b, 0.9)),
                     "ratio_p50": float(np.median(a) / max(np.median(b), 1e-9))}
    if args.json:
        print(json.dumps(out))
        return
    print(f"{'set':<12} {'n':>4}  {'MiniLM int8 p50 / p90 ms':>26}  {'static p50 / p90 ms':>22}  {'p50 ratio':>9}")
    for name, r in out.items():
        print(f"{name:<12} {r['n']:>4}  {r['minilm_p50_ms']:>12.2f} / {r['minilm_p90_ms']:<11.2f}  "
              f"{r['static_p50_ms']:>9.3f} / {r['static_p90_ms']:<10.3f}  {r['ratio_p50']:>8.1f}x")
    print("CPU time per prompt (thread_time), one prompt at a time, one thread")


if __name__ == "__main__":
    main()
