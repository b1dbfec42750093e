"""Did the router find a signal? Bootstrap confidence intervals of out-of-fold
APGR against random routing (0.5) and of its difference from the plain
baseline on the same folds, and the verdict in plain words.

The bootstrap resamples prompts with replacement, a group at a time (the
repeats of one prompt, or with `evaluate --split-by` a whole subject, since
the rows of one group are not independent), keeps every row's out-of-fold
score and fold, and recomputes the figure exactly as `evaluate` reports it:
APGR per fold, mean over the folds (and over the fold splits of --repeats).
The procedure and the baseline are resampled with the same draws, so the
interval of their difference is paired. Numpy only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Run = tuple[np.ndarray, Sequence[tuple[np.ndarray, np.ndarray]]]  # (out-of-fold scores, folds)


class _Fold:
    """One test fold's rows, with its score ties precomputed, so the APGR of
    any reweighting (a bootstrap draw) is two bincounts."""

    def __init__(self, scores: np.ndarray, gain: np.ndarray, rows: np.ndarray) -> None:
        self.rows = rows
        # blocks of tied scores, highest first (ties count as a random order: metrics.quality_curve)
        _, self.block = np.unique(-np.asarray(scores, float)[rows], return_inverse=True)
        self.gain = gain[rows]

    def apgr(self, w: np.ndarray) -> float:
        """APGR of this fold with row weights w (integer multiplicities: the
        same as metrics.apgr on the rows repeated w times)."""
        w = w[self.rows]
        m = np.bincount(self.block, weights=w)  # items per block
        g = np.bincount(self.block, weights=w * self.gain)  # gain per block
        total, n = g.sum(), m.sum()
        if total <= 1e-12 or n == 0:  # the strong model is not better here: undefined
            return float("nan")
        before = np.concatenate([[0.0], np.cumsum(g)[:-1]])  # cumulative gain before each block
        # sum over the share sweep k = 0..n of the expected cumulative gain
        area = float((m * before + g * (m - 1) / 2).sum() + total)
        return area / ((n + 1) * total)


def weighted_apgr(scores: Any, fast: Any, strong: Any, weights: Any = None) -> float:
    """metrics.apgr, vectorised, with optional integer row weights."""
    s = np.asarray(scores, float)
    gain = np.asarray(strong, float) - np.asarray(fast, float)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, float)
    return _Fold(s, gain, np.arange(len(s))).apgr(w)


def _figure(folds: list[list[_Fold]], w: np.ndarray) -> float:
    """Mean over runs of the mean over folds where APGR is defined (folds.fold_mean)."""
    means = []
    for run in folds:
        v = np.asarray([f.apgr(w) for f in run])
        v = v[~np.isnan(v)]
        if len(v):
            means.append(v.mean())
    return float(np.mean(means)) if means else float("nan")


def intervals(
    runs: Sequence[Run], fast: Any, strong: Any, groups: np.ndarray | None = None,
    baseline: Sequence[Run] | None = None, draws: int = 1000, seed: int = 0, level: float = 0.95,
    baseline_name: str = "the baseline",
) -> dict[str, Any]:
    """The bootstrap summary of an evaluation: `runs` the procedure's (scores,
    folds) per fold split, `baseline` the same for the baseline on the same
    folds; groups: rows with equal ids are drawn together (None: each row)."""
    fast, strong = np.asarray(fast, float), np.asarray(strong, float)
    gain = strong - fast
    n = len(gain)
    _, gid = np.unique(np.arange(n) if groups is None else np.asarray(groups), return_inverse=True)
    n_groups = int(gid.max()) + 1 if n else 0
    proc = [[_Fold(s, gain, te) for _, te in splits] for s, splits in runs]
    base = [[_Fold(s, gain, te) for _, te in splits] for s, splits in baseline] if baseline else None
    rng = np.random.default_rng(seed)
    a, b = np.empty(draws), np.empty(draws)
    for i in range(draws):
        w = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[gid].astype(float)
        a[i] = _figure(proc, w)
        b[i] = _figure(base, w) if base else np.nan
    ones = np.ones(n)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2

    def ci(x: np.ndarray) -> list[float] | None:
        x = x[~np.isnan(x)]
        return [float(np.quantile(x, lo_q)), float(np.quantile(x, hi_q))] if len(x) else None

    out: dict[str, Any] = {
        "draws": draws, "level": level, "resampled": "rows" if groups is None else f"{n_groups} groups",
        "apgr": _figure(proc, ones), "apgr_ci": ci(a), "baseline_name": baseline_name,
    }
    if gain.sum() <= 0:  # APGR exists only in folds that happen to have a gap: no verdict on such a table
        out["apgr_ci"] = out["diff_ci"] = None
        out["verdict"] = "no verdict: the strong model is not better than the fast one on this table"
        return out
    if base:  # (the table has a gap here)
        out["baseline_apgr"] = _figure(base, ones)
        out["baseline_apgr_ci"] = ci(b)
        out["diff"] = out["apgr"] - out["baseline_apgr"]
        out["diff_ci"] = ci(a - b)
    out["verdict"] = verdict(out)
    return out


def verdict(ci: dict[str, Any]) -> str:
    """Plain words for the intervals: is there a signal, and is the procedure
    better or worse than the baseline beyond chance."""
    a = ci.get("apgr_ci")
    if a is None:
        parts = ["no verdict: APGR is undefined (the strong model is never better)"]
    elif a[0] > 0.5:
        parts = ["signal: APGR CI above 0.5"]
    elif a[1] < 0.5:
        parts = ["worse than random: APGR CI below 0.5"]
    else:
        parts = ["no signal: APGR CI includes 0.5"]
    d = ci.get("diff_ci")
    other = ci.get("baseline_name", "the baseline")
    if d is not None:
        if d[0] > 0:
            parts.append(f"better than {other} (CI of the difference above 0)")
        elif d[1] < 0:
            parts.append(f"worse than {other} (CI of the difference below 0)")
        else:
            parts.append(f"not distinguishable from {other} (CI of the difference includes 0)")
    return "; ".join(parts)


def no_signal(ci: dict[str, Any]) -> bool:
    a = ci.get("apgr_ci")
    return a is None or a[0] <= 0.5


def format_lines(ci: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows for the text summary and the markdown report."""
    pct = f"{100 * ci['level']:.0f}%"
    rows = []
    if ci.get("apgr_ci"):
        rows.append((f"APGR {pct} CI (bootstrap, {ci['resampled']})", f"{ci['apgr_ci'][0]:.3f} – {ci['apgr_ci'][1]:.3f}"))
    if ci.get("diff_ci"):
        other = ci.get("baseline_name", "the baseline").removeprefix("the ")
        rows.append((f"APGR − {other} {pct} CI", f"{ci['diff']:+.3f} ({ci['diff_ci'][0]:+.3f} – {ci['diff_ci'][1]:+.3f}); "
                     f"{other} {ci['baseline_apgr']:.3f}"))
    rows.append(("verdict", ci["verdict"]))
    return rows
