"""How good a router is on graded pairs, pure numpy (definitions in
ARCHITECTURE.md): the quality curve over the share sent to the strong model,
APGR, and the quality kept at one live threshold. Here so the serving side
(the dashboard's view of shadowed traffic) and calibrate share one definition.

A router gives each prompt a score; sending the top `share` of prompts (by
score) to the strong model gives quality(share) = mean of the chosen model's
score. Ties are broken at random in expectation (quality is interpolated
linearly across a tied block), so a constant or random score has APGR ~ 0.5."""

from __future__ import annotations

from typing import Any

import numpy as np


def quality_curve(scores: Any, fast: Any, strong: Any) -> tuple[np.ndarray, np.ndarray]:
    """(shares, quality) at share = k/n for k = 0..n."""
    s = np.asarray(scores, float)
    f = np.asarray(fast, float)
    g = np.asarray(strong, float) - f  # gain of sending each prompt to the strong model
    n = len(s)
    if n == 0:
        raise ValueError("no prompts")
    order = np.argsort(-s, kind="stable")
    s, g = s[order], g[order]
    cum = np.concatenate([[0.0], np.cumsum(g)])
    # Within a block of tied scores, the expected gain of taking j of its m
    # items is j/m of the block's total: interpolate between block edges.
    edges = np.flatnonzero(np.diff(s) != 0) + 1
    bounds = np.concatenate([[0], edges, [n]])
    exp = np.empty(n + 1)
    for a, b in zip(bounds[:-1], bounds[1:]):
        j = np.arange(a, b + 1)
        exp[a : b + 1] = cum[a] + (cum[b] - cum[a]) * (j - a) / (b - a)
    quality = f.mean() + exp / n
    return np.arange(n + 1) / n, quality


def apgr(scores: Any, fast: Any, strong: Any) -> float:
    """Average performance gap recovered: mean over the share sweep of
    (quality - q_fast) / (q_strong - q_fast). NaN when the strong model is not better."""
    f, st = np.asarray(fast, float), np.asarray(strong, float)
    gap = st.mean() - f.mean()
    if gap <= 0:
        return float("nan")
    _, q = quality_curve(scores, f, st)
    return float((q.mean() - f.mean()) / gap)


def at_threshold(difficulty: Any, threshold: Any, fast: Any, strong: Any) -> dict[str, float]:
    """What the live rule `difficulty >= threshold -> strong` gives on these
    pairs (`threshold` one number or one per pair): the share sent to the strong
    model, the mean quality kept, and the
    share of the fast-to-strong gap it recovers (NaN when strong is not better)."""
    p, f, st = np.asarray(difficulty, float), np.asarray(fast, float), np.asarray(strong, float)
    if len(p) == 0:
        raise ValueError("no prompts")
    to_strong = p >= np.asarray(threshold, float)
    quality = float(np.where(to_strong, st, f).mean())
    gap = st.mean() - f.mean()
    return {
        "share": float(to_strong.mean()),
        "quality": quality,
        "pgr": float((quality - f.mean()) / gap) if gap > 0 else float("nan"),
    }
