"""The calibrate subcommands (registered in calibrate/cli.py). Each is an
object with configure(parser) and run(args) -> exit code. Progress goes to
stderr; results to stdout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


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


# -- shared loading --------------------------------------------------------------


def load_outcomes(paths: list[str], tenant: str | None = None) -> Any:
    """Read and concatenate outcome files and gateway outcome logs (a log's JSONL
    or redis://...?stream=KEY; calibrate/outcome_log.py), ids prefixed when several."""
    from calibrate.outcome_log import is_log, read_log
    from calibrate.outcomes import Outcomes, read

    parts = [read_log(p, tenant=tenant) if is_log(p) else read(p) for p in paths]
    if len(parts) == 1:
        return parts[0]
    out = Outcomes([], [], [], [], [])
    for path, o in zip(paths, parts):
        out.ids += [f"{Path(path).stem}:{i}" for i in o.ids]
        out.prompts += o.prompts
        out.fast += o.fast
        out.strong += o.strong
        out.extra += o.extra or [{} for _ in o.ids]
    return out


def featurise(o: Any, embedder: str, cache: bool, progress: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    from calibrate.embed import embed_prompts
    from policies.features import cheap_features
    from router.embedding.encoders import make_encoder

    enc = make_encoder(embedder)
    E = embed_prompts(o.prompts, encoder=enc, use_cache=cache, progress=progress)
    F = np.asarray([cheap_features(o.messages(i)) for i in range(len(o))], np.float64)
    return E, F, enc.id


def _groups(o: Any) -> np.ndarray | None:
    """Rows repeating a prompt (as the router sees it) share a CV fold; None
    when every prompt is distinct (calibrate/folds.py says why)."""
    from calibrate.folds import prompt_groups
    from policies.features import conversation_text

    return prompt_groups([conversation_text(o.messages(i)) for i in range(len(o))])


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outcomes", action="append", required=True, metavar="FILE",
                   help="outcome JSONL, or the gateway's outcome log (its JSONL or redis://host:port/0?stream=KEY); repeatable")
    p.add_argument("--tenant", help="outcome logs: only this tenant's records")
    p.add_argument("--embedder", default="auto", choices=["auto", "onnx", "onnx-fp32", "torch", "hash", "static"],
                   help="static: the model2vec distillation of MiniLM (classifier.encoder static)")
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache (~/.cache/thinkgate)")
    p.add_argument("--seed", type=int, default=0)
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


# -- convert ---------------------------------------------------------------------


def _convert_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="CSV/TSV/JSONL files or directories (e.g. routellm/mmlu/)")
    p.add_argument("-o", "--out", default="-", help="outcome JSONL to write (default stdout)")
    p.add_argument("--prompt-col", help="prompt column (default: prompt, messages, question, ...)")
    p.add_argument("--fast-col", help="fast model's score column (default: detected)")
    p.add_argument("--strong-col", help="strong model's score column (default: detected)")


def _convert_run(args: argparse.Namespace) -> int:
    from calibrate.outcomes import convert, write

    n = write(convert(args.inputs, fast=args.fast_col, strong=args.strong_col, prompt=args.prompt_col), args.out)
    _err(f"wrote {n} outcomes to {args.out if args.out != '-' else 'stdout'}")
    return 0


convert = SimpleNamespace(configure=_convert_configure, run=_convert_run)


# -- evaluate --------------------------------------------------------------------


def _evaluate_configure(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--cv", type=int, default=5, help="folds (default 5)")
    p.add_argument("--repeats", type=int, default=1, help="repeat the CV over this many fold splits and average (default 1)")
    p.add_argument("--json", action="store_true", help="print only the JSON summary line")
    p.add_argument("--plots", metavar="DIR", help="write cost_quality.png and reliability.png here")
    p.add_argument("--baseline", action="store_true",
                   help="print the plain baseline's line (LR on embeddings, same folds; always in the JSON: the verdict needs it)")
    p.add_argument("--compare", action="store_true", help="also evaluate the previous procedure (ridge-gain-lex/3), same folds")
    p.add_argument(
        "--model", metavar="ARTIFACT",
        help="score these outcomes with an already trained artifact (no refit, no CV): how it routes data it never saw",
    )
    p.add_argument("--split-by", choices=["group"],
                   help="a domain shift: the outer folds split the outcomes' `group` (e.g. the MMLU subject), "
                        "so every fold is scored on groups its fit never saw")
    p.add_argument("--train-on", action="append", metavar="FILE",
                   help="fit the procedure and the baseline on these outcomes and score --outcomes (e.g. GSM8K -> MMLU)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap draws for the CIs of APGR and of APGR - baseline (0: none; default 1000)")
    p.add_argument("--candidates", help=f"comma-separated subset of the inner-CV candidates ({', '.join(_candidates())})")


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


def _outer_groups(args: argparse.Namespace, o: Any) -> np.ndarray | None:
    if not args.split_by:
        return None
    names = [(e or {}).get(args.split_by) for e in (o.extra or [{} for _ in o.ids])]
    if any(x is None for x in names):
        raise ValueError(f"--split-by {args.split_by}: {sum(x is None for x in names)} outcomes have no {args.split_by!r} field")
    uniq = sorted(set(names))
    if len(uniq) < args.cv:
        raise ValueError(f"--split-by {args.split_by}: {len(uniq)} distinct values are too few for {args.cv}-fold CV")
    ids = {g: i for i, g in enumerate(uniq)}
    return np.asarray([ids[x] for x in names], np.int64)


def _evaluate_run(args: argparse.Namespace) -> int:
    from calibrate import bootstrap, folds, train

    o = load_outcomes(args.outcomes, getattr(args, "tenant", None))
    if args.model:
        return _evaluate_artifact(args, o)
    if args.train_on:
        from calibrate.transfer import evaluate_transfer

        return evaluate_transfer(args, o)
    if len(o) < 2 * args.cv:
        raise ValueError(f"{len(o)} outcomes are too few for {args.cv}-fold CV")
    E, F, _ = featurise(o, args.embedder, not args.no_cache, not args.quiet)
    L = train.lexical_matrix([o.messages(i) for i in range(len(o))])
    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    cfg = _config(args)
    groups = _groups(o)
    outer = _outer_groups(args, o)
    res = train.repeated_cross_validate(E, F, o.fast, o.strong, args.cv, args.repeats, cfg, not args.quiet, L=L, groups=groups,
                                        outer_groups=outer)
    s = res["summary"]
    bs = [train.cross_validate_baseline(E, o.fast, o.strong, args.cv, args.seed + r, groups, outer) for r in range(args.repeats)]
    b = {"apgr": folds.fold_mean([x["apgr"] for x in bs]), "apgr_std": folds.fold_mean([x["apgr_std"] for x in bs]),
         "cpt": {k: folds.fold_mean([x["cpt"][k] for x in bs]) for k in bs[0]["cpt"]},
         "auroc": folds.fold_mean([x["auroc"] for x in bs]), "procedure": bs[0]["procedure"]}
    s["baseline"] = b  # the same fold splits as the procedure, averaged the same way
    if args.split_by:
        s["split_by"] = {"field": args.split_by, "groups": int(len(np.unique(outer)))}
    if args.baseline and not args.json:
        _out(f"baseline (LR on embeddings): APGR {b['apgr']:.3f} ± {b['apgr_std']:.3f}, CPT(80%) {100 * b['cpt']['80']:.1f}%")
    if args.compare:
        old = train.TrainConfig(seed=args.seed, candidates=("cheap", "full"))
        r = train.repeated_cross_validate(E, F, o.fast, o.strong, args.cv, args.repeats, old, not args.quiet, L=L, groups=groups,
                                          outer_groups=outer)["summary"]
        s["previous"] = {k: r[k] for k in ("apgr", "apgr_std", "cpt", "auroc", "procedure")}
        if not args.json:
            _out(f"previous ({r['procedure']}): APGR {r['apgr']:.3f} ± {r['apgr_std']:.3f}, CPT(80%) {100 * r['cpt']['80']:.1f}%")
    if args.bootstrap:
        # resample whole groups: prompt repeats, or the split's groups (subjects) under --split-by
        draw = outer if outer is not None else groups
        s["ci"] = bootstrap.intervals(res["runs"], o.fast, o.strong, draw, [(x["scores"], x["splits"]) for x in bs],
                                      draws=args.bootstrap, seed=args.seed)
    chosen = [f.get("candidate") for f in s.get("folds", [])]
    s["candidates_chosen"] = {c: chosen.count(c) for c in dict.fromkeys(chosen)}
    if args.plots:
        s["plots"] = _plots(args, res["scores"], res["probs"], o)
    if not args.json:
        _out(format_summary(s))
    _out(_json(s))
    return 0


def _evaluate_artifact(args: argparse.Namespace, o: Any) -> int:
    """evaluate --model: the artifact's own scores on these outcomes, and what
    its threshold does to them (share sent to the reasoning route, quality)."""
    from calibrate import metrics
    from policies.difficulty import DifficultyClassifier, resolve

    if args.repeats != 1 or args.baseline or args.compare or args.split_by or args.train_on:
        raise ValueError("--model scores a trained artifact: --repeats, --baseline, --compare, --split-by and --train-on do not apply")
    path = resolve(args.model)
    E, F, embedder_id = featurise(o, args.embedder, not args.no_cache, not args.quiet)
    clf = DifficultyClassifier.load(path, embedder_id=embedder_id.split("@")[0])  # the family, as train records it
    probs = clf.predict_many(F, E, [o.messages(i) for i in range(len(o))])
    fast, strong = np.asarray(o.fast, float), np.asarray(o.strong, float)
    s = metrics.summary(probs, probs, fast, strong)
    to_strong = probs >= clf.threshold
    quality = float(np.where(to_strong, strong, fast).mean())
    gap = s["q_strong"] - s["q_fast"]
    s["at_threshold"] = {
        "threshold": clf.threshold, "strong_share": float(to_strong.mean()), "quality": quality,
        "pgr": (quality - s["q_fast"]) / gap if gap else None,
    }
    s["procedure"] = f"artifact {path.name} ({clf.meta.get('procedure', '?')}), scored as trained: no refit"
    s["model"] = str(path)
    if args.bootstrap:
        from calibrate.bootstrap import intervals

        every = np.arange(len(o))
        s["ci"] = intervals([(probs, [(every[:0], every)])], fast, strong, _groups(o), draws=args.bootstrap, seed=args.seed)
    if args.plots:
        _plots(args, probs, probs, o)
    if not args.json:
        _out(format_summary(s))
        t = s["at_threshold"]
        _out(f"at its threshold {t['threshold']:.4f}: {100 * t['strong_share']:.1f}% to the reasoning route, "
             f"quality {t['quality']:.3f}" + ("" if t["pgr"] is None else f" (PGR {t['pgr']:.2f})"))
    _out(_json(s))
    return 0


def _plots(args: argparse.Namespace, scores: Any, probs: Any, o: Any) -> list[str]:
    from calibrate import plots
    from calibrate.metrics import needs_strong

    d = Path(args.plots)
    d.mkdir(parents=True, exist_ok=True)
    plots.cost_quality(scores, o.fast, o.strong, d / "cost_quality.png", title=", ".join(Path(p).stem for p in args.outcomes))
    plots.reliability(probs, needs_strong(o.fast, o.strong), d / "reliability.png")
    return [str(d / "cost_quality.png"), str(d / "reliability.png")]


def format_summary(s: dict[str, Any]) -> str:
    rows = [
        ("prompts", f"{s['n']}"),
        ("quality fast / strong / oracle", f"{s['q_fast']:.3f} / {s['q_strong']:.3f} / {s.get('q_oracle', float('nan')):.3f}"),
        ("APGR (mean ± sd over folds)", f"{s['apgr']:.3f} ± {s['apgr_std']:.3f}  (pooled {s['pooled']['apgr']:.3f}; random ≈ 0.5)")
        if "apgr_std" in s else ("APGR", f"{s['apgr']:.3f}  (random ≈ 0.5)"),
        ("CPT 50/80/95 %" + (" (fold mean)" if "apgr_std" in s else ""), " / ".join(f"{100 * s['cpt'][k]:.1f}%" for k in ("50", "80", "95"))),
        ("quality at 50 % strong", f"{s['quality_at_50']:.3f}"),
        ("AUROC (strong better)", f"{s['auroc']:.3f}"),
        ("ECE", f"{s['ece']:.3f}"),
    ]
    if s.get("distinct_prompts", s["n"]) < s["n"]:
        rows.insert(1, ("distinct prompts", f"{s['distinct_prompts']} (repeats of a prompt kept in one fold)"))
    folds = len(s.get("folds", []))
    if folds and s.get("apgr_folds", folds) < folds:
        rows.insert(3, ("APGR / CPT defined in", f"{s['apgr_folds']} of {folds} folds (in the others the strong model is not better)"))
    if "repeats" in s:
        rows.insert(3, ("APGR per fold split (seed)", ", ".join(f"{r['apgr']:.3f} ({r['seed']})" for r in s["repeats"])))
    if s.get("candidates_chosen"):
        rows.append(("candidate chosen (folds)", ", ".join(f"{c} {k}" for c, k in s["candidates_chosen"].items())))
    if s.get("ci"):
        from calibrate.bootstrap import format_lines

        rows += format_lines(s["ci"])
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


evaluate = SimpleNamespace(configure=_evaluate_configure, run=_evaluate_run)


# -- train -----------------------------------------------------------------------


def _train_configure(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--out", required=True, help="artifact directory, e.g. models/mine")
    p.add_argument("--cv", type=int, default=5,
                   help="also run out-of-fold evaluation and store it (0: skip); with no signal the baseline is trained")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap draws for the stored CIs (default 1000)")
    p.add_argument("--candidates", help=f"comma-separated subset of the inner-CV candidates ({', '.join(_candidates())})")
    _add_target_args(p)


def _train_run(args: argparse.Namespace) -> int:
    from calibrate import artifact, train

    o = load_outcomes(args.outcomes, getattr(args, "tenant", None))
    E, F, enc_id = featurise(o, args.embedder, not args.no_cache, not args.quiet)
    L = train.lexical_matrix([o.messages(i) for i in range(len(o))])
    cfg = _config(args)
    cv = None
    groups = _groups(o)
    fallback = None
    if args.cv:
        from dataclasses import replace

        from calibrate import bootstrap

        res = train.cross_validate(E, F, o.fast, o.strong, args.cv, cfg, not args.quiet, L=L, groups=groups)
        cv = res["summary"]
        base = train.cross_validate_baseline(E, o.fast, o.strong, args.cv, args.seed, groups)
        cv["baseline"] = {k: base[k] for k in ("apgr", "apgr_std", "cpt", "auroc", "procedure")}
        if args.bootstrap:
            cv["ci"] = bootstrap.intervals([(res["scores"], res["splits"])], o.fast, o.strong, groups,
                                           [(base["scores"], base["splits"])], draws=args.bootstrap, seed=args.seed)
        _err(format_summary(cv))
        if "ci" in cv and bootstrap.no_signal(cv["ci"]) and cfg.candidates != ("baseline",):
            # Nothing to learn beyond chance: the simplest model, and say so.
            fallback = f"{cv['ci']['verdict']}: trained the simplest candidate (baseline) instead of choosing"
            cfg = replace(cfg, candidates=("baseline",))
            res = {**res, "probs": None}
            _err(f"warning: {fallback}")
    fitted = train.fit(E, F, o.fast, o.strong, cfg, not args.quiet, L=L, groups=groups)
    fast, strong = np.asarray(o.fast), np.asarray(o.strong)
    # The threshold table comes from held-out scores: the outer CV's when run,
    # else the inner CV's of the final fit.
    probs = res["probs"] if args.cv and res["probs"] is not None else fitted.probs(fitted.oof_scores)
    table = artifact.calibration_table(probs, fast, strong)
    thr, rule = artifact.choose_threshold(table, **_targets(args, default_pgr=0.8))
    data = {
        "files": [Path(p).name for p in args.outcomes],
        "sha256": o.digest(),
        "n": len(o),
        "q_fast": float(fast.mean()),
        "q_strong": float(strong.mean()),
    }
    out = artifact.write_artifact(args.out, fitted, data=data, cv=cv, table=table, threshold=thr, rule=rule, embedder_variant=enc_id,
                                  fallback=fallback)
    _err(f"candidate={fitted.candidate} alpha={fitted.alpha:g} feature_weight={fitted.feature_weight:g} threshold={thr:.4f} ({rule['rule']}, share {rule['share']:.2f})")
    _out(_json({"artifact": str(out), "threshold": thr, "apgr": cv["apgr"] if cv else None, "candidate": fitted.candidate,
                "verdict": cv["ci"]["verdict"] if cv and "ci" in cv else None, "fallback": fallback}))
    return 0


train = SimpleNamespace(configure=_train_configure, run=_train_run)


# -- threshold -------------------------------------------------------------------


def _threshold_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="artifact directory or name under models/")
    p.add_argument("--outcomes", action="append", metavar="FILE",
                   help="held-out outcomes to calibrate on (default: the artifact's stored out-of-fold table)")
    p.add_argument("--embedder", default="auto", choices=["auto", "onnx", "onnx-fp32", "torch", "hash", "static"])
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the threshold, do not write it")
    p.add_argument("--quiet", action="store_true")
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
