"""Router metrics, as in RouteLLM's evaluation (definitions in ARCHITECTURE.md).

A router gives each prompt a score; sending the top `share` of prompts (by
score) to the strong model gives quality(share) = mean of the chosen model's
score. Ties are broken at random in expectation (quality is interpolated
linearly across a tied block), so a constant or random score has APGR ~ 0.5.
Numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.router_quality import apgr, quality_curve  # noqa: F401  (one definition, shared with the gateway)


def cpt(scores: Any, fast: Any, strong: Any, x: float) -> float:
    """Smallest share of strong calls whose quality reaches q_fast + x * gap."""
    f, st = np.asarray(fast, float), np.asarray(strong, float)
    gap = st.mean() - f.mean()
    if gap <= 0:
        return float("nan")
    shares, q = quality_curve(scores, f, st)
    hit = np.flatnonzero(q >= f.mean() + x * gap - 1e-12)
    return float(shares[hit[0]]) if len(hit) else 1.0


def quality_at(scores: Any, fast: Any, strong: Any, share: float) -> float:
    shares, q = quality_curve(scores, fast, strong)
    return float(np.interp(share, shares, q))


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    s = np.asarray(scores, float)
    y = np.asarray(labels, float) > 0.5
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def ece(probs: Any, labels: Any, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    p = np.asarray(probs, float)
    y = np.asarray(labels, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / len(p))


def reliability(probs: Any, labels: Any, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per non-empty bin."""
    p = np.asarray(probs, float)
    y = np.asarray(labels, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return [(float(p[idx == b].mean()), float(y[idx == b].mean()), int((idx == b).sum())) for b in range(bins) if (idx == b).any()]


def needs_strong(fast: Any, strong: Any) -> np.ndarray:
    """The event the classifier's probability is calibrated against: the
    strong model's answer is better than the fast model's."""
    return (np.asarray(strong, float) > np.asarray(fast, float)).astype(float)


def summary(scores: Any, probs: Any, fast: Any, strong: Any) -> dict[str, Any]:
    f, st = np.asarray(fast, float), np.asarray(strong, float)
    y = needs_strong(f, st)
    return {
        "n": int(len(f)),
        "q_fast": float(f.mean()),
        "q_strong": float(st.mean()),
        "q_oracle": float(np.maximum(f, st).mean()),
        "apgr": apgr(scores, f, st),
        "cpt": {str(int(x * 100)): cpt(scores, f, st, x) for x in (0.5, 0.8, 0.95)},
        "quality_at_50": quality_at(scores, f, st, 0.5),
        "auroc": auroc(scores, y),
        "ece": ece(probs, y),
    }
