"""Item-response model over models x items: how hard each item is, and how much a
stronger model gains on it.

    P(model m answers item i well) = sigmoid(a_i * theta_m - b_i)

theta_m: the model's ability; b_i: the item's difficulty (higher = the average model,
theta = 0, does worse); a_i: its discrimination (how much ability matters on it: the
items where a stronger model helps). Scores may be soft (a judge's preference in
0..1); the loss is the Bernoulli log-likelihood with Gaussian priors, fitted by
alternating damped Newton steps, each a closed-form per-parameter update (the
parameters of one kind are independent given the others). With few models per item
(two, in a pair table) a_i is not identified and is held at 1 (the Rasch model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class IRTFit:
    items: list[str]
    models: list[str]
    theta: np.ndarray  # per model
    b: np.ndarray  # per item: difficulty
    a: np.ndarray  # per item: discrimination (1 under the Rasch model)
    loglik: float

    def gain(self, lo: float | None = None, hi: float | None = None) -> np.ndarray:
        """Per item: P(good) for a strong model minus for a weak one, the two at the
        80th and 20th percentile of the fitted abilities unless given: how much
        routing this item to the stronger model is worth."""
        lo = float(np.quantile(self.theta, 0.2)) if lo is None else lo
        hi = float(np.quantile(self.theta, 0.8)) if hi is None else hi
        return _sig(self.a * hi - self.b) - _sig(self.a * lo - self.b)


def _sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit(
    item_idx: np.ndarray, model_idx: np.ndarray, score: np.ndarray, *, items: list[str], models: list[str],
    two_pl: bool | None = None, rounds: int = 60, sd_theta: float = 1.0, sd_b: float = 3.0, sd_a: float = 0.5,
) -> IRTFit:
    """Fit on long-format arrays (one entry per observed (item, model) score).
    two_pl: estimate a_i (default: when items have at least 8 models on average)."""
    item_idx = np.asarray(item_idx, np.int64)
    model_idx = np.asarray(model_idx, np.int64)
    y = np.asarray(score, np.float64)
    n_i, n_m = len(items), len(models)
    if two_pl is None:
        two_pl = len(y) / max(n_i, 1) >= 8
    theta = np.zeros(n_m)
    b = np.zeros(n_i)
    a = np.ones(n_i)

    def probs() -> np.ndarray:
        return _sig(a[item_idx] * theta[model_idx] - b[item_idx])

    for _ in range(rounds):
        # abilities
        p = probs()
        w = p * (1 - p)
        ai = a[item_idx]
        g = np.bincount(model_idx, ai * (p - y), n_m) + theta / sd_theta**2
        h = np.bincount(model_idx, ai * ai * w, n_m) + 1 / sd_theta**2
        theta -= np.clip(g / h, -1, 1)
        # difficulties
        p = probs()
        w = p * (1 - p)
        g = np.bincount(item_idx, y - p, n_i) + b / sd_b**2
        h = np.bincount(item_idx, w, n_i) + 1 / sd_b**2
        b -= np.clip(g / h, -1, 1)
        if two_pl:
            p = probs()
            w = p * (1 - p)
            t = theta[model_idx]
            g = np.bincount(item_idx, t * (p - y), n_i) + (a - 1) / sd_a**2
            h = np.bincount(item_idx, t * t * w, n_i) + 1 / sd_a**2
            a -= np.clip(g / h, -0.5, 0.5)
    p = np.clip(probs(), 1e-9, 1 - 1e-9)
    ll = float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return IRTFit(list(items), list(models), theta, b, a, ll)


def fit_rows(rows: list, **kw: object) -> IRTFit:
    """Fit on corpus rows (calibrate.prior.corpus.Row) of one source."""
    items = sorted({r.item for r in rows})
    models = sorted({r.model for r in rows})
    ii = {k: n for n, k in enumerate(items)}
    mi = {k: n for n, k in enumerate(models)}
    return fit(
        np.array([ii[r.item] for r in rows]), np.array([mi[r.model] for r in rows]), np.array([r.score for r in rows]),
        items=items, models=models, **kw,  # type: ignore[arg-type]
    )
