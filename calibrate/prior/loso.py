"""Leave one source out: train the prior on every source but one, score that source's
pair table without refitting (the cold start a new user is in), and compare with an
existing artifact scored the same way. The question the prior answers is transfer to
pairs and domains it never saw, so the split is by source, never by item."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from calibrate import metrics
from calibrate.prior.fit import ItemTable, fit_prior


def apgr_ci(probs: np.ndarray, fast: np.ndarray, strong: np.ndarray, draws: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """APGR and a 95 % percentile bootstrap interval over prompts."""
    rng = np.random.default_rng(seed)
    point = float(metrics.apgr(probs, fast, strong))
    n = len(fast)
    vals = []
    for _ in range(draws):
        i = rng.integers(0, n, n)
        if np.mean(strong[i]) == np.mean(fast[i]):
            continue
        vals.append(metrics.apgr(probs[i], fast[i], strong[i]))
    lo, hi = (np.quantile(vals, [0.025, 0.975]) if vals else (np.nan, np.nan))
    return point, float(lo), float(hi)


Select = Callable[[ItemTable, np.ndarray, np.ndarray], tuple[float, int]]


def run(
    items: ItemTable, E: np.ndarray, F: np.ndarray, pairs: dict[str, dict[str, Any]], *, embedding_dim: int | None = None,
    alpha: float | None = None, feature_weight: float = 1.0, target: str, others: dict[str, Callable[[str], np.ndarray]] | None = None,
    draws: int = 1000, select: Select | None = None,
) -> list[dict[str, Any]]:
    """pairs: source -> {"E", "F", "fast", "strong"} (its pair table, featurised);
    others: name -> f(source) -> probabilities on that pair table (e.g. the old default).
    `select` (nested selection): alpha and width chosen again for each held-out source,
    on the other sources' items only, so the held-out source never helps choose them;
    else the given `alpha` and `embedding_dim` for every fold."""
    out = []
    src = np.asarray(items.source)
    y = items.target(target)
    for held in sorted(pairs):
        keep = src != held
        a_, d_ = select(items.subset(keep), E[keep], F[keep]) if select is not None else (alpha, embedding_dim)
        if a_ is None or d_ is None:
            raise ValueError("give alpha and embedding_dim, or select")
        prior = fit_prior(E[keep], F[keep], y[keep], [s for s, k in zip(items.source, keep) if k],
                          embedding_dim=d_, alpha=a_, feature_weight=feature_weight, target=target)
        p = pairs[held]
        fast, strong = np.asarray(p["fast"], float), np.asarray(p["strong"], float)
        s = prior.scores(p["E"], p["F"])
        row: dict[str, Any] = {"held_out": held, "n": len(fast), "trained_on": sorted(set(src[keep])),
                               "alpha": a_, "embedding_dim": d_}
        a, lo, hi = apgr_ci(s, fast, strong, draws=draws)
        row["prior"] = {"apgr": a, "ci": [lo, hi], "auroc": float(metrics.auroc(s, metrics.needs_strong(fast, strong)))}
        for name, fn in (others or {}).items():
            q = fn(held)
            a, lo, hi = apgr_ci(q, fast, strong, draws=draws)
            row[name] = {"apgr": a, "ci": [lo, hi], "auroc": float(metrics.auroc(q, metrics.needs_strong(fast, strong)))}
        out.append(row)
    return out
