"""The compute floor of MiniLM-L6 on this CPU: the time its int8 linear
layers alone take at the best speed onnxruntime's int8 GEMM reaches here.

    .venv/bin/python bench/int8_floor.py [--lengths 16,128,256] [--threads 1]

Each GEMM is built exactly as the quantised model runs it (DynamicQuantizeLinear
of the activations, MatMulInteger with int8 weights, rescale), for the four
weight shapes of a MiniLM layer (QKV 384x1152, output 384x384, FFN 384x1536 and
1536x384), timed per shape and summed over the six layers. A 1024^3 GEMM gives
the kernel's peak for comparison. If the linear layers alone need more than the
latency budget at a length, no graph optimisation of the same model meets it;
attention, layer norms and GELU come on top (bench/routing.py measures the whole).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

HIDDEN, FFN, LAYERS = 384, 1536, 6
SHAPES = [(HIDDEN, 3 * HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, FFN), (FFN, HIDDEN)]


def gemm_session(k: int, n: int, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).integers(-127, 127, (k, n), dtype=np.int8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["X"], ["Xq", "s", "z"]),
        helper.make_node("MatMulInteger", ["Xq", "W", "z"], ["Y32"]),
        helper.make_node("Cast", ["Y32"], ["Yf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["Yf", "s"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes, "gemm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])], [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def median_s(session, m: int, k: int, iters: int) -> float:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    for _ in range(5):
        session.run(None, {"X": x})
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        session.run(None, {"X": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def floor(lengths: list[int], threads: int = 1, iters: int = 50) -> dict[str, object]:
    sessions = {s: gemm_session(*s, threads) for s in SHAPES}
    rows = []
    for m in lengths:
        seconds = LAYERS * sum(median_s(sessions[s], m, s[0], iters) for s in SHAPES)
        gop = 2 * LAYERS * m * sum(k * n for k, n in SHAPES) / 1e9
        rows.append({"tokens": m, "gemm_ms": seconds * 1e3, "gop": gop, "gops_per_s": gop / seconds})
    peak = 2 * 1024**3 / median_s(gemm_session(1024, 1024, threads), 1024, 1024, max(5, iters // 5)) / 1e9
    return {"threads": threads, "rows": rows, "peak_gops_per_s": peak}


def report(f: dict[str, object]) -> str:
    lines = [f"int8 linear layers of MiniLM-L6 alone ({f['threads']} thread(s)); kernel peak (1024^3 GEMM) {f['peak_gops_per_s']:.0f} GOP/s"]
    for r in f["rows"]:  # type: ignore[attr-defined]
        lines.append(f"  {r['tokens']:>4} tokens: {r['gop']:.2f} GOP in {r['gemm_ms']:.2f} ms ({r['gops_per_s']:.0f} GOP/s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="16,128,256")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args(argv)
    print(report(floor([int(x) for x in args.lengths.split(",")], args.threads, args.iters)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
