"""The plain baseline of every evaluation, and the simplest candidate of
select-lex/4: LogisticRegression (C=1) on the raw sentence embedding, label
"the strong answer is better than the fast one" (what RouteLLM-style routers
fit). Here so the training procedure (train.py) and the out-of-fold
evaluation (crossval.py) fit exactly the same model."""

from __future__ import annotations

from typing import Any

import numpy as np

from calibrate import metrics
from router.embedding.encoders import DIM


def standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales (constant columns scale 1), for both fits."""
    mean = X.mean(0)
    scale = X.std(0)
    scale[scale < 1e-8] = 1.0
    return mean, scale


def baseline_dim(E: np.ndarray) -> int:
    return min(DIM, E.shape[1])  # the baseline reads the sentence embedding only


def fit_baseline(E: np.ndarray, labels: np.ndarray, width: int | None = None) -> Any:
    """The plain baseline: LogisticRegression (C=1) on the raw sentence
    embedding, label "strong better than fast" (what `evaluate --baseline` runs).
    `width`: the columns it reads (default the sentence embedding's)."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    X = E[:, : baseline_dim(E) if width is None else width]
    if labels.min() == labels.max():  # one class: a constant score (APGR 0.5 / undefined)
        return DummyClassifier(strategy="prior").fit(X, labels)
    return LogisticRegression(C=1.0, max_iter=2000).fit(X, labels)


def score_baseline(m: Any, E: np.ndarray) -> np.ndarray:
    X = E[:, : baseline_dim(E)]
    return m.decision_function(X) if hasattr(m, "decision_function") else np.zeros(len(X))


def baseline_arrays(E: np.ndarray, F: np.ndarray, fast: np.ndarray, strong: np.ndarray) -> dict[str, np.ndarray]:
    """The baseline in the artifact's linear form: no standardisation (mean 0,
    scale 1), cheap features weighted 0; serving stays one dot product."""
    d = baseline_dim(E)
    m = fit_baseline(E, metrics.needs_strong(fast, strong))
    coef = np.asarray(getattr(m, "coef_", np.zeros((1, d))), np.float64)[0]
    icpt = float(np.asarray(getattr(m, "intercept_", [0.0]))[0])
    fm, fs = standardise(F)
    return {
        "emb_mean": np.zeros(d), "emb_scale": np.ones(d), "feat_mean": fm, "feat_scale": fs,
        "feat_weight": np.float64(0.0), "coef_emb": coef, "coef_feat": np.zeros(F.shape[1]), "intercept": np.float64(icpt),
    }
