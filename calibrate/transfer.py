"""`evaluate --train-on A --outcomes B`: the procedure and the plain baseline
fitted on one table and scored on another (e.g. RouteLLM GSM8K -> MMLU), the
largest domain shift the visible data allows. No CV: one fit each, scored on
every row of B, with bootstrap CIs over B's prompts (calibrate/bootstrap.py)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np


def evaluate_transfer(args: argparse.Namespace, test: Any) -> int:
    from calibrate import baseline, bootstrap, metrics, train
    from calibrate.commands import featurise, format_summary, load_outcomes
    from calibrate.commands.common import _config, _json, _out
    from calibrate.commands.data import _groups
    from policies.features import conversation_text

    if args.repeats != 1 or args.split_by or args.compare:
        raise ValueError("--train-on fits once on other outcomes: --repeats, --split-by and --compare do not apply")
    tr = load_outcomes(args.train_on, getattr(args, "tenant", None))
    seen = {conversation_text(tr.messages(i)) for i in range(len(tr))}
    shared = sum(conversation_text(test.messages(i)) in seen for i in range(len(test)))
    if shared == len(test):
        raise ValueError("every prompt of --outcomes is in --train-on: that is not held-out data")
    E1, F1, id1 = featurise(tr, args.embedder, not args.no_cache, not args.quiet)
    E2, F2, _ = featurise(test, args.embedder, not args.no_cache, not args.quiet)
    L1 = train.lexical_matrix([tr.messages(i) for i in range(len(tr))])
    L2 = train.lexical_matrix([test.messages(i) for i in range(len(test))])
    m = train.fit(E1, F1, tr.fast, tr.strong, _config(args), not args.quiet, L=L1, groups=_groups(tr))
    scores = m.scores(np.asarray(E2, np.float64), np.asarray(F2, np.float64), L2)
    fast, strong = np.asarray(test.fast, float), np.asarray(test.strong, float)
    s = metrics.summary(scores, m.probs(scores), fast, strong)
    base = baseline.fit_baseline(np.asarray(E1, np.float64), metrics.needs_strong(tr.fast, tr.strong))
    b_scores = baseline.score_baseline(base, np.asarray(E2, np.float64))
    b = metrics.summary(b_scores, b_scores, fast, strong)
    s["baseline"] = {k: b[k] for k in ("apgr", "cpt", "auroc")} | {"procedure": "baseline: LogisticRegression(C=1) on embeddings"}
    s["procedure"] = f"{m.procedure} fitted on {', '.join(args.train_on)} ({len(tr)} outcomes), scored here: no refit"
    s["candidates_chosen"] = {m.candidate: 1}
    s["inner_candidates"] = m.candidates
    s["train_on"] = {"files": args.train_on, "n": len(tr), "shared_prompts": shared, "embedder": id1}
    if args.bootstrap:
        every = np.arange(len(test))
        s["ci"] = bootstrap.intervals([(scores, [(every[:0], every)])], fast, strong, _groups(test),
                                      [(b_scores, [(every[:0], every)])], draws=args.bootstrap, seed=args.seed)
    if not args.json:
        _out(f"baseline (LR on embeddings, fitted on the same outcomes): APGR {b['apgr']:.3f}, CPT(80%) {100 * b['cpt']['80']:.1f}%")
        if shared:
            _out(f"note: {shared} of {len(test)} prompts also appear in --train-on")
        _out(format_summary(s))
    _out(_json(s))
    return 0
