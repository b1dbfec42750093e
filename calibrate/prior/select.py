"""The prior's ridge penalty and embedding width, chosen by item-level K-fold CV on the
corpus itself (how well the prompt predicts the held-out items' targets), never on a
pair table: the leave-one-source-out figures stay an evaluation, not a selection."""

from __future__ import annotations

from typing import Any

import numpy as np

from calibrate.prior.fit import ItemTable, fit_prior
from router.embedding.encoders import DIM, LAYERS_DIM

ALPHAS = (300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def choose(
    items: ItemTable, E: np.ndarray, F: np.ndarray, *, target: str, alphas: tuple[float, ...] | None = None,
    dims: tuple[int, ...] | None = None, folds: int = 5, seed: int = 0,
) -> tuple[float, int, list[dict[str, Any]]]:
    """The (alpha, width) with the best mean per-source Spearman correlation between
    out-of-fold predictions and targets (each source counts the same)."""
    y = items.target(target)
    src = np.asarray(items.source)
    fold = np.random.default_rng(seed).integers(0, folds, len(y))
    dims = dims or tuple(d for d in (DIM, DIM + LAYERS_DIM) if d <= E.shape[1])
    grid = []
    for dim in dims:
        for alpha in alphas or ALPHAS:
            oof = np.zeros(len(y))
            for k in range(folds):
                tr, te = fold != k, fold == k
                p = fit_prior(E[tr], F[tr], y[tr], list(src[tr]), embedding_dim=dim, alpha=alpha, target=target)
                oof[te] = p.scores(E[te], F[te])
            per = {s: _spearman(oof[src == s], y[src == s]) for s in sorted(set(src))}
            grid.append({"alpha": alpha, "embedding_dim": dim, "spearman": float(np.mean(list(per.values()))), "per_source": per})
    best = max(grid, key=lambda g: g["spearman"])
    return float(best["alpha"]), int(best["embedding_dim"]), grid
