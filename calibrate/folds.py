"""How outcome rows are split for cross-validation, and how per-fold figures
are averaged.

Rows that repeat a prompt stay in one fold. A user's own traffic repeats
prompts ("hi", the same support question, retries), and with the copies on
both sides of a split the model is scored on prompts it trained on: the
out-of-fold figures flatter it and the inner CV rewards memorising (the
lexical part can learn each repeated prompt's outcome by heart). When every
prompt is distinct the split is plain shuffled k-fold, row by row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def prompt_groups(texts: Sequence[str]) -> np.ndarray | None:
    """One group id per row, equal for rows with the same text (what the
    router sees of the conversation); None when all texts are distinct."""
    ids: dict[str, int] = {}
    groups = np.fromiter((ids.setdefault(t, len(ids)) for t in texts), np.int64, len(texts))
    return None if len(ids) == len(texts) else groups


def kfold(n: int, k: int, seed: int, groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled k-fold over rows, or over groups when given (every row of a
    group lands in the same fold). Row-level folds are exactly sklearn's
    KFold(shuffle=True, random_state=seed)."""
    from sklearn.model_selection import KFold

    if groups is None:
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n)))
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < k:
        raise ValueError(f"{len(uniq)} distinct prompts are too few for {k}-fold CV (at least {k}; or lower the fold count)")
    out = []
    for _, te_groups in KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(uniq))):
        test = np.isin(inverse, te_groups)
        out.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return out


def distinct(n: int, groups: np.ndarray | None) -> int:
    return n if groups is None else len(np.unique(groups))


def fold_mean(values: Sequence[float]) -> float:
    """The mean over the folds where the figure is defined. APGR and CPT are
    undefined (NaN) in a fold where the strong model is not better; on a small
    table or a narrow gap one such fold must not void the whole evaluation
    (`apgr_folds` says over how many folds the mean ran). NaN only when every
    fold is undefined."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def fold_std(values: Sequence[float]) -> float:
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    return float(v.std()) if len(v) else float("nan")
