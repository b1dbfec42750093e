"""The commands that work on a trained artifact or the embedder cache:
`threshold` (re-choose the routing threshold), `report` (a markdown/HTML
summary) and `export-onnx` (the int8 embedder, exported now)."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from calibrate.commands.common import _add_target_args, _err, _json, _out, _targets
from calibrate.commands.data import featurise, load_outcomes


def _threshold_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="artifact directory or name under models/")
    p.add_argument("--outcomes", action="append", metavar="FILE",
                   help="held-out outcomes to calibrate on (default: the artifact's stored out-of-fold table)")
    p.add_argument("--embedder", default="auto", choices=["auto", "onnx", "onnx-fp32", "torch", "hash", "static"], help="sentence encoder for the features (auto: int8 ONNX, else torch; hash: tests only)")
    p.add_argument("--no-cache", action="store_true", help="embed again instead of reading the embedding cache")
    p.add_argument("--dry-run", action="store_true", help="print the threshold, do not write it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_target_args(p)


def _threshold_run(args: argparse.Namespace) -> int:
    from calibrate import artifact
    from policies.difficulty import DifficultyClassifier, resolve

    path = resolve(args.model)
    clf = DifficultyClassifier.load(path)
    if args.outcomes:
        o = load_outcomes(args.outcomes, getattr(args, "tenant", None))
        if o.digest() == clf.meta.get("training_data", {}).get("sha256"):
            raise ValueError("these outcomes are the artifact's training data, so its scores are not held-out; "
                             "omit --outcomes to use the stored out-of-fold table")
        E, F, _ = featurise(o, args.embedder, not args.no_cache, not args.quiet)
        msgs = [o.messages(i) for i in range(len(o))]
        table = artifact.calibration_table(clf.predict_many(F, E, msgs), np.asarray(o.fast), np.asarray(o.strong))
    else:
        table = clf.meta["calibration"]
    thr, rule = artifact.choose_threshold(table, **_targets(args))
    if not args.dry_run:
        artifact.set_threshold(path, thr, rule)
    _err(f"threshold {thr:.4f}: {100 * rule['share']:.1f}% to reasoning, expected quality {rule['expected_quality']:.3f}"
         + (" (dry run)" if args.dry_run else f" -> {path}/meta.json"))
    _out(_json({"threshold": thr, **rule}))
    return 0


threshold = SimpleNamespace(configure=_threshold_configure, run=_threshold_run)


# -- report ----------------------------------------------------------------------


def _report_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="artifact directory or name under models/")
    p.add_argument("--out", default="-", help="report file (.md or .html; default: markdown on stdout)")
    p.add_argument("--plots", metavar="DIR", help="link these plots (from `evaluate --plots DIR`)")


def _report_run(args: argparse.Namespace) -> int:
    from calibrate.report import render
    from policies.difficulty import DifficultyClassifier, resolve

    path = resolve(args.model)
    clf = DifficultyClassifier.load(path)
    html = args.out.endswith(".html")
    text = render(clf.meta, args.model, plots=args.plots, html=html)
    if args.out == "-":
        _out(text)
    else:
        Path(args.out).write_text(text)
        _err(f"wrote {args.out}")
    return 0


report = SimpleNamespace(configure=_report_configure, run=_report_run)


# -- export-onnx -----------------------------------------------------------------


def _export_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fp32", action="store_true", help="the unquantised model")
    p.add_argument("--force", action="store_true", help="re-export even if cached")


def _export_run(args: argparse.Namespace) -> int:
    from router.embedding.encoders import export_onnx as export

    _out(str(export(quantize=not args.fp32, force=args.force)))
    return 0


export_onnx = SimpleNamespace(configure=_export_configure, run=_export_run)
