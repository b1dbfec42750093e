"""The pair-agnostic difficulty prior: prompt -> how hard the item is for models in
general, learned from many models' outcomes, written as an ordinary artifact.

1. Per source, an item-response model (irt.py) gives each item a difficulty b_i and a
   gain (how much more a stronger model gets right on it). Scales differ between
   sources, so both are z-scored within their source.
2. A ridge regression from what the gateway computes per request (the routing vector
   and the cheap features, exactly as `train` uses them) to the item's target
   (difficulty, gain, or their mean), each source weighted equally whatever its size.
3. Its score becomes P(the strong answer is better) through a Platt map fitted on the
   training sources' pair tables (a calibrated function of the prior), and the
   threshold is chosen on them as `train` chooses one. No pair outcomes are needed to
   serve it; once a pair has its own, `calibrate train` fits that pair's artifact as for
   any table, and `evaluate --model` compares the two on the pair's outcomes;
   `evaluate --prior` measures what the prior adds as one more feature of the plain
   baseline (README: nothing beyond its CI on the three tables measured), so `train`
   does not use it.

The result is a `thinkgate-difficulty/2` artifact: serving is the same dot product,
with no extra encoder pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibrate.prior.corpus import RATING, Row
from calibrate.prior.irt import IRTFit, fit_rows

TARGETS = ("difficulty", "gain", "both")


@dataclass
class ItemTable:
    """One row per distinct (source, item): its prompt and z-scored targets."""

    source: list[str]
    item: list[str]
    prompt: list[Any]
    difficulty: np.ndarray
    gain: np.ndarray
    fits: dict[str, IRTFit | None] = field(default_factory=dict)  # None: a rated source

    def __len__(self) -> int:
        return len(self.item)

    def target(self, kind: str) -> np.ndarray:
        if kind == "difficulty":
            return self.difficulty
        if kind == "gain":
            return self.gain
        if kind == "both":
            return (self.difficulty + self.gain) / 2
        raise ValueError(f"target must be one of {TARGETS}")

    def subset(self, keep: np.ndarray) -> ItemTable:
        idx = np.flatnonzero(keep)
        return ItemTable(
            [self.source[i] for i in idx], [self.item[i] for i in idx], [self.prompt[i] for i in idx],
            self.difficulty[idx], self.gain[idx], self.fits,
        )


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def item_table(rows: list[Row]) -> ItemTable:
    """Fit the IRT model per source and collect each item's z-scored targets. A rated
    source (corpus.read_rated) needs no fit: its rating is the difficulty, and, having
    no models to compare, the gain too (harder items are where a stronger model gains)."""
    src, item, prompt, diff, gain = [], [], [], [], []
    fits: dict[str, IRTFit | None] = {}
    for s in sorted({r.source for r in rows}):
        mine = [r for r in rows if r.source == s]
        if all(r.model == RATING for r in mine):
            rated = {r.item: r for r in mine}  # one rating per item (the last if repeated)
            fits[s] = None
            src += [s] * len(rated)
            item += list(rated)
            prompt += [r.prompt for r in rated.values()]
            z = _z(np.array([r.score for r in rated.values()], float))
            diff.append(z)
            gain.append(z)
            continue
        if any(r.model == RATING for r in mine):
            raise ValueError(f"source {s!r} mixes ratings with outcomes: give them different source names")
        f = fit_rows(mine)
        fits[s] = f
        first = {}
        for r in mine:
            first.setdefault(r.item, r.prompt)
        src += [s] * len(f.items)
        item += f.items
        prompt += [first[k] for k in f.items]
        diff.append(_z(f.b))
        gain.append(_z(f.gain()))
    return ItemTable(src, item, prompt, np.concatenate(diff), np.concatenate(gain), fits)


@dataclass
class Prior:
    arrays: dict[str, np.ndarray]
    embedding_dim: int
    alpha: float
    feature_weight: float
    target: str

    def scores(self, E: np.ndarray, F: np.ndarray) -> np.ndarray:
        a = self.arrays
        Ze = (E[:, : self.embedding_dim] - a["emb_mean"]) / a["emb_scale"]
        Zf = (F - a["feat_mean"]) / a["feat_scale"] * a["feat_weight"]
        return Ze @ a["coef_emb"] + Zf @ a["coef_feat"] + float(a["intercept"])


def fit_prior(
    E: np.ndarray, F: np.ndarray, y: np.ndarray, sources: list[str], *, embedding_dim: int,
    alpha: float = 3000.0, feature_weight: float = 1.0, target: str = "both",
) -> Prior:
    """Weighted ridge (each source weighs the same in total) on standardised
    [embedding[:dim], feature_weight * cheap features]."""
    from calibrate.baseline import standardise

    Eh = E[:, :embedding_dim]
    em, es = standardise(Eh)
    fm, fs = standardise(F)
    X = np.hstack([(Eh - em) / es, (F - fm) / fs * feature_weight])
    src = np.asarray(sources)
    w = np.ones(len(y))
    for s in set(sources):
        w[src == s] = len(y) / (len(set(sources)) * (src == s).sum())
    mu = float(np.average(y, weights=w))
    xm = np.average(X, axis=0, weights=w)
    Xc, yc = X - xm, y - mu
    sw = np.sqrt(w)[:, None]
    Xw = Xc * sw
    A = Xw.T @ Xw + alpha * np.eye(X.shape[1])
    coef = np.linalg.solve(A, Xw.T @ (yc * sw[:, 0]))
    icpt = mu - float(xm @ coef)
    d = Eh.shape[1]
    arrays = {
        "emb_mean": em, "emb_scale": es, "feat_mean": fm, "feat_scale": fs, "feat_weight": np.float64(feature_weight),
        "coef_emb": coef[:d], "coef_feat": coef[d:],
        "intercept": np.float64(icpt),
    }
    return Prior(arrays, d, alpha, feature_weight, target)


def platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """P(strong better) = sigmoid(a * score + b), fitted by logistic regression."""
    from sklearn.linear_model import LogisticRegression

    if labels.min() == labels.max():
        return 0.0, float(np.log((labels.mean() + 1e-6) / (1 - labels.mean() + 1e-6)))
    m = LogisticRegression(C=1e6, max_iter=1000).fit(scores.reshape(-1, 1), labels)
    return float(m.coef_[0, 0]), float(m.intercept_[0])
