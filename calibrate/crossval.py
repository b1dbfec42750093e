"""Out-of-fold evaluation of the training procedure (calibrate/train.py): the
whole procedure, model selection included, refitted per outer fold; repeated
over fold splits; and the plain baseline on the same folds, which every
evaluation reports beside it (the no-harm check of issue 16).

Split from train.py, which fits one model; this module only scores fits on
rows they never saw."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from calibrate import metrics
from calibrate.baseline import baseline_dim, fit_baseline
from calibrate.folds import distinct, fold_mean, fold_std, kfold
from calibrate.train import TrainConfig, _one_blas_thread, fit, procedure_name


def cross_validate(
    E: np.ndarray, F: np.ndarray, fast: Any, strong: Any, folds: int = 5,
    cfg: TrainConfig | None = None, progress: bool = True, L: Any = None, groups: np.ndarray | None = None,
    outer_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Out-of-fold scores and probabilities of the whole procedure (model
    selection included), the pooled summary and the per-fold spread. groups:
    rows with equal ids stay in one fold, outer and inner (calibrate.folds).
    outer_groups (e.g. MMLU subjects): the outer folds split these instead, so
    each fold is scored on groups its fit never saw (a domain shift), and
    the inner CV of each fit splits them too (fit's `domains`), as
    `train --split-by` does."""
    with _one_blas_thread():
        return _cross_validate(E, F, fast, strong, folds, cfg, progress, L, groups, outer_groups)


def _cross_validate(
    E: np.ndarray, F: np.ndarray, fast: Any, strong: Any, folds: int, cfg: TrainConfig | None, progress: bool,
    L: Any = None, groups: np.ndarray | None = None, outer_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    from tqdm import tqdm

    cfg = cfg or TrainConfig()
    fast, strong = np.asarray(fast, float), np.asarray(strong, float)
    n = len(fast)
    scores, probs = np.zeros(n), np.zeros(n)
    per_fold, chosen = [], []
    splits = kfold(n, folds, cfg.seed + 1, groups if outer_groups is None else outer_groups)
    for tr, te in tqdm(splits, desc="cross-validation", unit="fold", disable=not progress, file=sys.stderr):
        m = fit(E[tr], F[tr], fast[tr], strong[tr], cfg, progress=False, L=None if L is None else L[tr],
                groups=None if groups is None else groups[tr], domains=None if outer_groups is None else outer_groups[tr])
        s = m.scores(np.asarray(E[te], np.float64), np.asarray(F[te], np.float64), None if L is None else L[te])
        scores[te], probs[te] = s, m.probs(s)
        per_fold.append(metrics.summary(s, probs[te], fast[te], strong[te]))
        chosen.append({"candidate": m.candidate, "embedding_dim": m.embedding_dim, "alpha": m.alpha, "feature_weight": m.feature_weight,
                       "lexical_alpha": m.lexical_alpha, "lexical_weight": m.lexical_weight})
    out = metrics.summary(scores, probs, fast, strong)
    # Pooled figures rank scores of different fold models together; the
    # per-fold means are the primary figures, the pooled ones are kept beside.
    out["pooled"] = {"apgr": out["apgr"], "cpt": out["cpt"], "quality_at_50": out["quality_at_50"]}
    out["apgr"] = fold_mean([f["apgr"] for f in per_fold])
    out["cpt"] = {k: fold_mean([f["cpt"][k] for f in per_fold]) for k in out["cpt"]}
    out["quality_at_50"] = fold_mean([f["quality_at_50"] for f in per_fold])
    out["apgr_std"] = fold_std([f["apgr"] for f in per_fold])
    out["cpt80_std"] = fold_std([f["cpt"]["80"] for f in per_fold])
    out["auroc_std"] = fold_std([f["auroc"] for f in per_fold])
    out["apgr_folds"] = int(np.sum(~np.isnan([f["apgr"] for f in per_fold])))
    out["folds"] = [{"apgr": f["apgr"], "cpt80": f["cpt"]["80"], "auroc": f["auroc"], "n": f["n"], **c} for f, c in zip(per_fold, chosen)]
    out["cv"] = folds
    out["distinct_prompts"] = distinct(n, groups)  # < n: repeated prompts were kept in one fold
    out["procedure"] = procedure_name(cfg, L is not None)
    return {"summary": out, "scores": scores, "probs": probs, "splits": splits}


def repeated_cross_validate(
    E: np.ndarray, F: np.ndarray, fast: Any, strong: Any, folds: int = 5, repeats: int = 1,
    cfg: TrainConfig | None = None, progress: bool = True, L: Any = None, groups: np.ndarray | None = None,
    outer_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """cross_validate() over `repeats` different fold splits (seeds cfg.seed,
    cfg.seed + 1, ...). On ~1,000 prompts the fold split alone moves APGR by
    ~0.015 (RouteLLM GSM8K, seeds 0-4: 0.677 to 0.716), more than most changes
    one would compare; the mean over repeats is the steadier figure. The
    summary averages every figure over the repeats, `apgr_std` is the spread
    over all repeats x folds, `repeat_apgr_std` that of the repeat means;
    scores and probabilities are those of the first repeat (for the plots),
    `runs` every repeat's (scores, splits) (for the bootstrap)."""
    from dataclasses import replace

    cfg = cfg or TrainConfig()
    runs = [cross_validate(E, F, fast, strong, folds, replace(cfg, seed=cfg.seed + r), progress, L, groups, outer_groups)
            for r in range(repeats)]
    every = [(r["scores"], r["splits"]) for r in runs]
    if repeats == 1:
        return {**runs[0], "runs": every}
    sums = [r["summary"] for r in runs]
    out = dict(sums[0])
    for key in ("apgr", "quality_at_50", "auroc", "ece"):
        out[key] = fold_mean([s[key] for s in sums])
    out["cpt"] = {k: fold_mean([s["cpt"][k] for s in sums]) for k in sums[0]["cpt"]}
    out["pooled"] = {"apgr": fold_mean([s["pooled"]["apgr"] for s in sums])}
    all_folds = [f for s in sums for f in s["folds"]]
    out["apgr_std"] = fold_std([f["apgr"] for f in all_folds])
    out["cpt80_std"] = fold_std([f["cpt80"] for f in all_folds])
    out["auroc_std"] = fold_std([f["auroc"] for f in all_folds])
    out["apgr_folds"] = sum(s["apgr_folds"] for s in sums)
    out["folds"] = all_folds
    out["repeats"] = [{"seed": cfg.seed + r, "apgr": s["apgr"], "cpt80": s["cpt"]["80"]} for r, s in enumerate(sums)]
    out["repeat_apgr_std"] = float(np.std([s["apgr"] for s in sums]))
    return {"summary": out, "scores": runs[0]["scores"], "probs": runs[0]["probs"], "runs": every}


def cross_validate_baseline(
    E: np.ndarray, fast: Any, strong: Any, folds: int = 5, seed: int = 0, groups: np.ndarray | None = None,
    outer_groups: np.ndarray | None = None, prior: np.ndarray | None = None,
) -> dict[str, Any]:
    """The plain baseline under the same folds: LogisticRegression (C=1) on the
    raw sentence embeddings, label "strong better than fast"; for comparison
    (and the simplest candidate of select-lex/4). `scores`: its out-of-fold
    scores, `splits` the folds (for the paired bootstrap). `prior`: one more
    column, a prior artifact's logit on each prompt (fixed, not refitted), so the
    fit can lean on the prior where the pair's own outcomes agree with it."""
    fast, strong = np.asarray(fast, float), np.asarray(strong, float)
    y = metrics.needs_strong(fast, strong)
    if prior is not None:
        # z-scored: against the embedding's small entries (unit-norm rows) one unit-scale
        # column is barely penalised by C=1, so the fit follows it as far as the outcomes do
        z = (prior - prior.mean()) / (prior.std() or 1.0)
        E = np.hstack([E[:, : baseline_dim(E)], z[:, None]])
    probs = np.zeros(len(y))
    per_fold = []
    splits = kfold(len(y), folds, seed + 1, groups if outer_groups is None else outer_groups)
    with _one_blas_thread():
        for tr, te in splits:
            m = fit_baseline(E[tr], y[tr], width=E.shape[1] if prior is not None else None)
            X = E[te] if prior is not None else E[te, : baseline_dim(E)]
            probs[te] = m.predict_proba(X)[:, -1] if len(m.classes_) > 1 else float(m.classes_[0])
            per_fold.append(metrics.summary(probs[te], probs[te], fast[te], strong[te]))
    out = metrics.summary(probs, probs, fast, strong)
    out["apgr"] = fold_mean([f["apgr"] for f in per_fold])
    out["apgr_std"] = fold_std([f["apgr"] for f in per_fold])
    out["cpt"] = {k: fold_mean([f["cpt"][k] for f in per_fold]) for k in out["cpt"]}
    out["procedure"] = "baseline: LogisticRegression(C=1) on embeddings" + (" + the prior's logit" if prior is not None else "")
    out["scores"], out["splits"] = probs, splits
    return out
