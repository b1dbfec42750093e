"""`calibrate evaluate`: out-of-fold evaluation of the training procedure against
the plain baseline on the same folds (APGR, CPT, AUROC, ECE, bootstrap CIs), or
of an already trained artifact (--model), or across data sets (--train-on,
calibrate/transfer.py); and format_summary, the table `train` prints too."""

from __future__ import annotations

import math

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from calibrate.commands.common import _add_data_args, _candidates, _config, _json, _out
from calibrate.commands.data import _groups, domains, featurise, load_outcomes


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
    p.add_argument("--split-by", metavar="FIELD",
                   help="a domain shift: the outer folds split this field of the outcomes (`group`: e.g. the MMLU "
                        "subject; `category`: scripts/mmlu_categories.py), so every fold is scored on values its fit "
                        "never saw, and each fit's model selection splits them too")
    p.add_argument("--train-on", action="append", metavar="FILE",
                   help="fit the procedure and the baseline on these outcomes and score --outcomes (e.g. GSM8K -> MMLU)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap draws for the CIs of APGR and of APGR - baseline (0: none; default 1000)")
    p.add_argument("--against", metavar="ARTIFACT",
                   help="with --model: the artifact it is compared with, paired on the same bootstrap draws "
                        "(default: the shipped prior, models/default, unless --model is it)")
    p.add_argument("--candidates", help=f"comma-separated subset of the inner-CV candidates ({', '.join(_candidates())})")
    p.add_argument("--prior", metavar="ARTIFACT",
                   help="also cross-validate the plain baseline with this artifact's logit as one more feature (e.g. a "
                        "`calibrate prior fit` artifact), same folds, paired CI against the baseline alone")


def _evaluate_run(args: argparse.Namespace) -> int:
    if args.against and not args.model:
        raise ValueError("--against compares a trained artifact: give --model too")
    from calibrate import bootstrap, crossval, folds, train

    o = load_outcomes(args.outcomes, getattr(args, "tenant", None))
    if args.prior and (args.model or args.train_on):
        raise ValueError("--prior adds a feature to the cross-validated baseline: not with --model or --train-on")
    if args.model:
        return _evaluate_artifact(args, o)
    if args.train_on:
        from calibrate.transfer import evaluate_transfer

        return evaluate_transfer(args, o)
    if len(o) < 2 * args.cv:
        raise ValueError(f"{len(o)} outcomes are too few for {args.cv}-fold CV (at least {2 * args.cv}: two per fold; or lower --cv)")
    E, F, enc = featurise(o, args.embedder, not args.no_cache, not args.quiet)
    L = train.lexical_matrix([o.messages(i) for i in range(len(o))])
    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    cfg = _config(args)
    groups = _groups(o)
    outer = domains(o, args.split_by, args.cv)
    res = crossval.repeated_cross_validate(E, F, o.fast, o.strong, args.cv, args.repeats, cfg, not args.quiet, L=L, groups=groups,
                                        outer_groups=outer)
    s = res["summary"]
    bs = [crossval.cross_validate_baseline(E, o.fast, o.strong, args.cv, args.seed + r, groups, outer) for r in range(args.repeats)]
    b = {"apgr": folds.fold_mean([x["apgr"] for x in bs]), "apgr_std": folds.fold_mean([x["apgr_std"] for x in bs]),
         "cpt": {k: folds.fold_mean([x["cpt"][k] for x in bs]) for k in bs[0]["cpt"]},
         "auroc": folds.fold_mean([x["auroc"] for x in bs]), "procedure": bs[0]["procedure"]}
    s["baseline"] = b  # the same fold splits as the procedure, averaged the same way
    if args.split_by:
        s["split_by"] = {"field": args.split_by, "groups": len(np.unique(outer))}
    if args.baseline and not args.json:
        _out(f"baseline (LR on embeddings): APGR {b['apgr']:.3f} ± {b['apgr_std']:.3f}, CPT(80%) {100 * b['cpt']['80']:.1f}%")
    bp = _with_prior(args, o, E, F, enc, groups, outer) if args.prior else None
    if bp is not None:
        s["baseline_with_prior"] = {"apgr": folds.fold_mean([x["apgr"] for x in bp]),
                                    "apgr_std": folds.fold_mean([x["apgr_std"] for x in bp]),
                                    "auroc": folds.fold_mean([x["auroc"] for x in bp]), "prior": args.prior,
                                    "procedure": bp[0]["procedure"]}
        if args.bootstrap:
            draw = outer if outer is not None else groups
            s["baseline_with_prior"]["ci"] = bootstrap.intervals(
                [(x["scores"], x["splits"]) for x in bp], o.fast, o.strong, draw, [(x["scores"], x["splits"]) for x in bs],
                draws=args.bootstrap, seed=args.seed, baseline_name="the baseline alone")
        if not args.json:
            w = s["baseline_with_prior"]
            line = f"baseline + prior {args.prior}: APGR {w['apgr']:.3f} ± {w['apgr_std']:.3f} (baseline alone {b['apgr']:.3f})"
            c = w.get("ci") or {}
            if c.get("diff_ci"):
                line += f"; paired difference {c['diff']:+.3f} [{c['diff_ci'][0]:+.3f}, {c['diff_ci'][1]:+.3f}]"
            _out(line)
    if args.compare:
        old = train.TrainConfig(seed=args.seed, candidates=("cheap", "full"))
        r = crossval.repeated_cross_validate(E, F, o.fast, o.strong, args.cv, args.repeats, old, not args.quiet, L=L, groups=groups,
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


def _with_prior(
    args: argparse.Namespace, o: Any, E: np.ndarray, F: np.ndarray, enc: str, groups: Any, outer: Any,
) -> list[dict[str, Any]]:
    """The baseline with a prior artifact's logit as one more column, on the baseline's folds."""
    from calibrate import crossval
    from policies.difficulty import DifficultyClassifier, resolve

    clf = DifficultyClassifier.load(resolve(args.prior), embedder_id=enc.split("@")[0])
    p = np.clip(clf.predict_many(F, E, [o.messages(i) for i in range(len(o))]), 1e-9, 1 - 1e-9)
    logit = np.log(p / (1 - p))
    return [crossval.cross_validate_baseline(E, o.fast, o.strong, args.cv, args.seed + r, groups, outer, prior=logit)
            for r in range(args.repeats)]


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
        # the cold-start report: a CI against random, and paired against the shipped prior (or --against)
        from calibrate.bootstrap import intervals

        every = np.arange(len(o))
        against = args.against or ("default" if resolve("default") != path else None)
        base = None
        if against:
            other = DifficultyClassifier.load(resolve(against), embedder_id=embedder_id.split("@")[0])
            base = [(other.predict_many(F, E, [o.messages(i) for i in range(len(o))]), [(every[:0], every)])]
            s["against"] = str(resolve(against))
        s["ci"] = intervals([(probs, [(every[:0], every)])], fast, strong, _groups(o), baseline=base, draws=args.bootstrap,
                            seed=args.seed, baseline_name=f"{resolve(against).name} ({against})" if against else "the baseline")
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


def _num(x: Any, why: str) -> str:
    """A figure, or "n/a (why)": no nan/inf reaches an operator without its reason."""
    return f"{x:.3f}" if isinstance(x, (int, float)) and math.isfinite(x) else f"n/a ({why})"


def format_summary(s: dict[str, Any]) -> str:
    no_gap = "the strong model is not better than the fast one on these prompts"
    pooled = _num(s.get("pooled", {}).get("apgr"), no_gap)
    rows = [
        ("prompts", f"{s['n']}"),
        ("quality fast / strong / oracle", f"{s['q_fast']:.3f} / {s['q_strong']:.3f} / {s.get('q_oracle', float('nan')):.3f}"),
        ("APGR (mean ± sd over folds)", f"{_num(s['apgr'], no_gap)} ± {_num(s['apgr_std'], 'fewer than 2 folds')}  (pooled {pooled}; random ≈ 0.5)")
        if "apgr_std" in s else ("APGR", f"{_num(s['apgr'], no_gap)}  (random ≈ 0.5)"),
        ("CPT 50/80/95 %" + (" (fold mean)" if "apgr_std" in s else ""), " / ".join(f"{100 * s['cpt'][k]:.1f}%" for k in ("50", "80", "95"))),
        ("quality at 50 % strong", f"{s['quality_at_50']:.3f}"),
        ("AUROC (strong better)", _num(s["auroc"], "no prompt where the strong model alone is right, or none where it is not")),
        ("ECE", _num(s["ece"], "no prompts")),
    ]
    if not s["q_strong"] > s["q_fast"]:
        # APGR measures how much of the strong model's lead a router keeps: with no lead it
        # means nothing, whatever AUROC says about ranking single prompts
        rows.append(("note", f"strong {s['q_strong']:.3f} is not above fast {s['q_fast']:.3f}: APGR and CPT are undefined or "
                             "meaningless; collect on a pair that differs (README, examples/system-bench.yaml)"))
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
