"""`calibrate train`: fit the difficulty classifier on outcomes, evaluate it out
of fold (falling back to the baseline when there is no signal), choose the
threshold on held-out scores and write the artifact."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from calibrate.commands.common import (
    _add_data_args,
    _add_target_args,
    _candidates,
    _config,
    _err,
    _json,
    _out,
    _targets,
)
from calibrate.commands.data import _groups, domains, featurise, load_outcomes
from calibrate.commands.evaluation import format_summary


def _train_configure(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--out", required=True, help="artifact directory, e.g. models/mine")
    p.add_argument("--cv", type=int, default=5,
                   help="also run out-of-fold evaluation and store it (0: skip); with no signal the baseline is trained")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap draws for the stored CIs (default 1000)")
    p.add_argument("--candidates", help=f"comma-separated subset of the inner-CV candidates ({', '.join(_candidates())})")
    p.add_argument("--split-by", metavar="FIELD",
                   help="traffic that moves between domains: the model selection (and --cv) split this field of the "
                        "outcomes (e.g. `group`), so candidates are judged on domains their fit never saw")
    _add_target_args(p)


def _train_run(args: argparse.Namespace) -> int:
    from calibrate import artifact, crossval, train

    o = load_outcomes(args.outcomes, getattr(args, "tenant", None))
    E, F, enc_id = featurise(o, args.embedder, not args.no_cache, not args.quiet)
    L = train.lexical_matrix([o.messages(i) for i in range(len(o))])
    cfg = _config(args)
    cv = None
    groups = _groups(o)
    split = domains(o, args.split_by, max(args.cv, 2))
    fallback = None
    if args.cv:
        from dataclasses import replace

        from calibrate import bootstrap

        res = crossval.cross_validate(E, F, o.fast, o.strong, args.cv, cfg, not args.quiet, L=L, groups=groups, outer_groups=split)
        cv = res["summary"]
        base = crossval.cross_validate_baseline(E, o.fast, o.strong, args.cv, args.seed, groups, split)
        cv["baseline"] = {k: base[k] for k in ("apgr", "apgr_std", "cpt", "auroc", "procedure")}
        if split is not None:
            cv["split_by"] = {"field": args.split_by, "groups": len(np.unique(split))}
        if args.bootstrap:
            # whole domains are drawn under --split-by, as evaluate does
            cv["ci"] = bootstrap.intervals([(res["scores"], res["splits"])], o.fast, o.strong, groups if split is None else split,
                                           [(base["scores"], base["splits"])], draws=args.bootstrap, seed=args.seed)
        _err(format_summary(cv))
        if "ci" in cv and bootstrap.no_signal(cv["ci"]) and cfg.candidates != ("baseline",):
            # Nothing to learn beyond chance: the simplest model, and say so.
            fallback = f"{cv['ci']['verdict']}: trained the simplest candidate (baseline) instead of choosing"
            cfg = replace(cfg, candidates=("baseline",))
            res = {**res, "probs": None}
            _err(f"warning: {fallback}")
    fitted = train.fit(E, F, o.fast, o.strong, cfg, not args.quiet, L=L, groups=groups, domains=split)
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
