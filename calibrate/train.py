"""The training procedure for the difficulty classifier, and its out-of-fold
evaluation (the same procedure, refitted per fold).

Procedure `ridge-gain/1`:
- inputs: the MiniLM embedding of conversation_text() (standardised) and the
  cheap features (standardised, multiplied by a weight w so the 13 features
  are penalised less than the 384 embedding dimensions);
- target: the gain of the strong model, strong - fast (in [-1, 1]). Ranking
  prompts by its expectation is exactly what maximises the quality-vs-share
  curve (APGR), and it uses both kinds of disagreement (strong right / fast
  wrong and the reverse) instead of a lossy binary label;
- model: ridge regression; alpha and w chosen by inner k-fold CV on APGR;
- calibration: Platt scaling of the inner out-of-fold scores against
  "strong is better than fast", so P is calibrated and strictly monotone in
  the score (the ranking, hence APGR, is untouched).

Procedure `ridge-gain-lex/2` adds a second ranker and blends the two:
- a ridge regression of the same gain on hashed word 1-2-grams of the text
  (policies.features.lexical_indices: binary, L2-normalised, 2^18 buckets),
  which sees surface cues (operators, numbers, phrasing, answer formats) the
  sentence embedding smooths away;
- score = z(embedding ridge) + lambda * z(lexical ridge), each z-scored with
  the mean and sd of its inner out-of-fold scores; the lexical alpha and
  lambda (0 included, i.e. no lexical part) are chosen by the same inner CV,
  on the same folds, after the embedding ridge's own selection;
- Platt scaling then calibrates the blended inner out-of-fold score.
The blend is linear, so the artifact stays a dot product: the z-scoring and
lambda are folded into the stored weights.

Procedure `ridge-gain-lex/3` also chooses, by the same inner CV, what the
embedding ridge reads of the routing vector (router/embedding/encoders.py): the sentence
embedding alone (384 values) or with the mean-pooled hidden states of the six
layers (2688). One forward pass gives both; which ranks better depends on the
data (on RouteLLM MMLU the layers add ~0.01 APGR, on GSM8K they do not), so
the data decides. The wider view and the lexical blend are taken only when
they beat the simpler model by more than one standard error over the inner
folds (the one-standard-error rule): on ~1,000 prompts the best of many
options otherwise wins by chance. With the cheap-v2 features (counts of
quantities and of their relations) this lifted out-of-fold APGR on RouteLLM
GSM8K from 0.670 to 0.695 and on MMLU from 0.690 to 0.701.

Procedure `select-lex/4` (issue 16: do no harm on tables it was not tuned
on) makes the simpler models candidates of the same inner CV: the plain
baseline (LogisticRegression on the sentence embedding, what `evaluate
--baseline` runs), the embedding ridge alone (no cheap features, no lexical
part), the embedding ridge with the cheap features, the embedding ridge with
the lexical blend, and ridge-gain-lex/3's richest model (CANDIDATES, simplest
first). It takes the simplest candidate that the best one does not beat
clearly (the one-standard-error rule over the paired inner-fold APGRs): on
the issue's three unseen tables ridge-gain-lex/3 fell to or below the
baseline on two, where its extra parts had won the inner CV by chance.
Every candidate is a linear scorer, so the artifact format does not change;
meta.json names the chosen one ("candidate").

Under a domain shift (`--split-by`), the inner CV splits the domains as the
outer one does: candidates are judged on domains their fit never saw, so
subject words that predict the gain only within seen subjects stop winning.
And "clearly" means two standard errors of the paired inner-fold gain, not
one (TrainConfig.clear_se): over three inner folds one SE is cleared by
chance by one candidate or another, and each chance win cost APGR where the
domain shifts. Chosen on RouteLLM MMLU-1500 split by subject (APGR − baseline
on the same folds: −0.063 at 1 SE, −0.013 at 2 SE), then checked on tables it
was not chosen on: MMLU-1500 split by category (−0.058 → −0.025), a collected
GSM8K-steps table split by problem (+0.014 → +0.031), GSM8K (+0.086 → +0.087,
the gain kept); the price is MMLU-1500 on random folds, +0.022 → +0.004 (a
lexical gain its CI did not separate from 0). The README's table has them all.

Tried on RouteLLM GSM8K and not taken (out-of-fold APGR, mean over the same
fold splits with and without the change): max-pooled or [CLS] hidden states
of the six layers as further views (0.697-0.699 against 0.6995, 3 splits); a
ridge on either model's answer length (an auxiliary target) blended in (at
best +0.0001, 2 splits); bagging five fits over inner-fold seeds (0.6983
against 0.6988, 5 splits); 5 or 10 inner folds instead of 3 (0.6998 / 0.6994
against 0.698, 5 splits); blending in a ridge on "fast wrong" (1 - fast)
or on "strong right" (0.691 / 0.685 at weight 0.25 against 0.694, 5 splits;
worse at every weight: the gain is the target that ranks); kNN, RBF kernels
and averaging the top inner-CV configurations (earlier).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibrate import metrics
from calibrate.baseline import baseline_arrays, baseline_dim, fit_baseline, score_baseline
from calibrate.baseline import standardise as _standardise  # shared with the baseline
from calibrate.folds import distinct, kfold
from policies.features import LEXICAL_DIM
from router.embedding.encoders import DIM, LAYERS_DIM

PROCEDURE = "select-lex/4"
# The candidates of select-lex/4, simplest first (the order the one-SE rule prefers):
CANDIDATES = ("baseline", "embedding", "cheap", "lexical", "full")
CANDIDATE_NOTES = {
    "baseline": "LogisticRegression(C=1) on the sentence embedding (the plain baseline)",
    "embedding": "ridge on the sentence embedding alone",
    "cheap": "ridge on the embedding (+ layer means if clearly better) and the cheap features",
    "lexical": "ridge on the embedding blended with the lexical ridge, no cheap features",
    "full": "ridge on the embedding and cheap features blended with the lexical ridge (ridge-gain-lex/3's richest)",
}
LEXICAL_CANDIDATES = ("lexical", "full")


@dataclass
class TrainConfig:
    alphas: tuple[float, ...] = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0, 300000.0)
    feature_weights: tuple[float, ...] = (1.0, 5.0)
    # widths of the routing vector the embedding ridge may read (those wider
    # than the given embeddings are skipped): the sentence embedding, + layers
    embedding_views: tuple[int, ...] = (DIM, DIM + LAYERS_DIM)
    one_se_rule: bool = True  # wider view / lexical blend only when clearly better (see _clearly_better)
    lexical_alphas: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    lexical_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)  # lambda; 0 = embedding ridge alone
    inner_folds: int = 3
    seed: int = 0
    # which candidates the inner CV chooses among (CANDIDATES; those needing the
    # lexical matrix are skipped without it). ("cheap", "full") is ridge-gain-lex/3.
    candidates: tuple[str, ...] = CANDIDATES
    # how many standard errors of the paired inner-fold gain make a richer candidate "clearly"
    # better than a simpler one (the module docstring gives the figures behind 2)
    clear_se: float = 2.0


@dataclass
class Fitted:
    arrays: dict[str, np.ndarray]
    alpha: float
    feature_weight: float
    inner_apgr: float
    embedding_dim: int
    oof_scores: np.ndarray  # inner out-of-fold scores of the chosen config (training rows)
    grid: list[dict[str, float]] = field(default_factory=list)
    lexical_alpha: float | None = None
    lexical_weight: float = 0.0
    procedure: str = PROCEDURE
    candidate: str = "full"  # the chosen one of CANDIDATES
    candidates: list[dict[str, Any]] = field(default_factory=list)  # each one's inner APGR (mean, per fold)

    def scores(self, E: np.ndarray, F: np.ndarray, L: Any = None) -> np.ndarray:
        """Blended scores; L: the lexical matrix of the same rows (required
        when the fit has a lexical part)."""
        a = self.arrays
        Ze = (E[:, : self.embedding_dim] - a["emb_mean"]) / a["emb_scale"]
        Zf = (F - a["feat_mean"]) / a["feat_scale"] * a["feat_weight"]
        s = Ze @ a["coef_emb"] + Zf @ a["coef_feat"] + float(a["intercept"])
        if "lex_coef" in a:
            if L is None:
                raise ValueError("this fit has a lexical part: pass the lexical matrix")
            s = s + np.asarray(L @ a["lex_coef"].astype(np.float64)).ravel() + float(a["lex_bias"])
        return s

    def probs(self, scores: np.ndarray) -> np.ndarray:
        a = self.arrays
        return 1.0 / (1.0 + np.exp(-(float(a["platt_a"]) * scores + float(a["platt_b"]))))


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The fits are small; multi-threaded BLAS on a busy machine makes them
    ~10x slower (threads wait for each other), so run them single-threaded."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(1):
        yield


def _ridge_path(
    E: np.ndarray, F: np.ndarray, y: np.ndarray, alphas: tuple[float, ...], w: float
) -> list[dict[str, np.ndarray]]:
    """Ridge regression (intercept unpenalised) for several alphas from one
    SVD of the standardised design: the whole alpha grid costs one fit."""
    em, es = _standardise(E)
    fm, fs = _standardise(F)
    X = np.hstack([(E - em) / es, (F - fm) / fs * w])  # columns have mean 0
    ym = float(y.mean())
    d = E.shape[1]
    if X.shape[0] >= X.shape[1]:
        # Tall design (e.g. 11k prompts x 2.7k columns): the eigenvectors of
        # X'X cost a fraction of an SVD of X and give the same path.
        lam, V = np.linalg.eigh(X.T @ X)
        Vty = V.T @ (X.T @ (y - ym))
        path = lambda alpha: V @ (Vty / (np.maximum(lam, 0.0) + alpha))  # noqa: E731
    else:
        U, sv, Vt = np.linalg.svd(X, full_matrices=False)
        Uty = U.T @ (y - ym)
        path = lambda alpha: Vt.T @ (sv / (sv**2 + alpha) * Uty)  # noqa: E731
    out = []
    for alpha in alphas:
        coef = path(alpha)
        out.append({
            "emb_mean": em, "emb_scale": es, "feat_mean": fm, "feat_scale": fs,
            "feat_weight": np.float64(w), "coef_emb": coef[:d].copy(), "coef_feat": coef[d:].copy(),
            "intercept": np.float64(ym),
        })
    return out


def _score(a: dict[str, np.ndarray], E: np.ndarray, F: np.ndarray) -> np.ndarray:
    E = E[:, : len(a["coef_emb"])]
    return ((E - a["emb_mean"]) / a["emb_scale"]) @ a["coef_emb"] + (
        (F - a["feat_mean"]) / a["feat_scale"] * a["feat_weight"]
    ) @ a["coef_feat"] + float(a["intercept"])


def lexical_matrix(messages: list[list[dict[str, Any]]]) -> Any:
    """The binary, L2-normalised hashed n-gram matrix (scipy CSR, rows =
    conversations): what policies.features.lexical_indices gives one at a time."""
    from scipy import sparse

    from policies.features import lexical_indices

    rows = [lexical_indices(m) for m in messages]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.fromiter((j for r in rows for j in r), np.int64, int(indptr[-1]))
    data = np.concatenate([np.full(len(r), 1.0 / np.sqrt(len(r))) for r in rows if r] or [np.zeros(0)])
    return sparse.csr_matrix((data, indices, indptr), shape=(len(rows), LEXICAL_DIM))


def _lexical_fit(L: Any, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import Ridge

    m = Ridge(alpha=alpha, solver="sparse_cg", tol=1e-4, max_iter=300).fit(L, y)
    return np.asarray(m.coef_, np.float64), float(m.intercept_)


def _z(s: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (s - ref.mean()) / (ref.std() or 1.0)


def _platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    if labels.min() == labels.max():
        return 0.0, float(np.log((labels.mean() + 1e-3) / (1 - labels.mean() + 1e-3)))
    sd = scores.std() or 1.0
    m = LogisticRegression(C=1e4, max_iter=1000).fit((scores / sd).reshape(-1, 1), labels)
    return float(m.coef_[0, 0] / sd), float(m.intercept_[0])


def _per_fold_apgr(scores: np.ndarray, fast: np.ndarray, strong: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """APGR per inner fold (NaN where the strong model is never better there).
    Per fold, not pooled: scores from different fits are not on one scale."""
    return np.asarray([metrics.apgr(scores[te], fast[te], strong[te]) for _, te in folds])


def _mean(per: np.ndarray) -> float:
    ok = per[~np.isnan(per)]
    return float(ok.mean()) if len(ok) else float("-inf")  # -inf: the strong model is never better


def _clearly_better(new: np.ndarray, old: np.ndarray, se: float = 1.0) -> bool:
    """The k-standard-error rule (k = TrainConfig.clear_se, 2 in training): a more
    complex option (the layer means, the lexical blend) is taken only when its mean
    gain over the simpler one across the inner folds exceeds k standard errors of that gain. Picking the best
    of many options on ~3 noisy folds otherwise adds parts that won by chance."""
    d = (new - old)[~np.isnan(new) & ~np.isnan(old)]
    if len(d) < 2:
        return bool(len(d) and d.mean() > 0)
    return bool(d.mean() > se * d.std(ddof=1) / np.sqrt(len(d)))


def fit(
    E: np.ndarray, F: np.ndarray, fast: np.ndarray, strong: np.ndarray,
    cfg: TrainConfig | None = None, progress: bool = True, L: Any = None, groups: np.ndarray | None = None,
    domains: np.ndarray | None = None,
) -> Fitted:
    """L: the lexical matrix (lexical_matrix()) of the same rows; None fits
    the embedding ridge alone (procedure ridge-gain/1). groups: rows with
    equal ids share an inner fold (calibrate.folds.prompt_groups). domains
    (e.g. MMLU subjects): the inner folds split these instead, so the model
    selection scores each candidate on domains its fit never saw. That is
    the question a router facing new domains must answer: under a subject
    shift, inner folds over prompts reward subject words (the lexical part)
    that do not carry to unseen subjects."""
    with _one_blas_thread():
        return _fit(E, F, fast, strong, cfg or TrainConfig(), progress, L, groups, domains)


def _fit(
    E: np.ndarray, F: np.ndarray, fast: np.ndarray, strong: np.ndarray, cfg: TrainConfig, progress: bool,
    L: Any = None, groups: np.ndarray | None = None, domains: np.ndarray | None = None,
) -> Fitted:
    from tqdm import tqdm

    E, F = np.asarray(E, np.float64), np.asarray(F, np.float64)
    fast, strong = np.asarray(fast, float), np.asarray(strong, float)
    y = strong - fast
    n = len(y)
    if domains is not None:
        # few domains: leave one out (three categories give three inner folds, not two)
        k = max(2, min(cfg.inner_folds, distinct(n, domains)))
        folds = kfold(n, k, cfg.seed, domains)
    else:
        k = max(2, min(cfg.inner_folds, distinct(n, groups) // 20 or 2))
        folds = kfold(n, k, cfg.seed, groups)
    grid: list[dict[str, float]] = []
    cands = [c for c in cfg.candidates if L is not None or c not in LEXICAL_CANDIDATES]
    unknown = set(cands) - set(CANDIDATES)
    if unknown or not cands:
        raise ValueError(f"unknown or no candidates {sorted(unknown) or list(cfg.candidates)} (known: {', '.join(CANDIDATES)})")
    lexical = L is not None and any(c in LEXICAL_CANDIDATES for c in cands)
    views = sorted({v for v in cfg.embedding_views if v <= E.shape[1]} or {E.shape[1]})
    # the (view, feature weight) ridges the candidates need; weight 0 = no cheap features
    needs: set[tuple[int, float]] = set()
    if "embedding" in cands:
        needs.add((views[0], 0.0))
    if "lexical" in cands:
        needs |= {(v, 0.0) for v in views}
    if "cheap" in cands or "full" in cands:
        needs |= {(v, w) for v in views for w in cfg.feature_weights if w > 0}
    steps = (len(needs) + ("baseline" in cands) + (len(cfg.lexical_alphas) if lexical else 0)) * k
    bar = tqdm(total=steps, desc="model selection", unit="fit", disable=not progress, file=sys.stderr, leave=False)
    ridge: dict[tuple[int, float], tuple[float, float, np.ndarray, np.ndarray]] = {}  # -> (score, alpha, oof, per)
    for view, w in sorted(needs):
        Ev = E[:, :view]
        oof = np.zeros((len(cfg.alphas), n))
        for tr, te in folds:
            for j, arrays in enumerate(_ridge_path(Ev[tr], F[tr], y[tr], cfg.alphas, w)):
                oof[j, te] = _score(arrays, Ev[te], F[te])
            bar.update(1)
        for j, alpha in enumerate(cfg.alphas):
            per = _per_fold_apgr(oof[j], fast, strong, folds)
            score = _mean(per)
            grid.append({"embedding_dim": view, "alpha": alpha, "feature_weight": w, "inner_apgr": score})
            if (view, w) not in ridge or score > ridge[(view, w)][0]:
                ridge[(view, w)] = (score, alpha, oof[j], per)

    def best_ridge(weights: list[float]) -> tuple[int, float]:
        """(view, w): per view the best weight; the narrowest view unless a
        wider one wins clearly (one-standard-error rule)."""
        best_w = {v: max(weights, key=lambda w: ridge[(v, w)][0]) for v in views}
        view = views[0]
        for wider in views[1:]:
            b, a = ridge[(wider, best_w[wider])], ridge[(view, best_w[view])]
            if b[0] > a[0] and (not cfg.one_se_rule or _clearly_better(b[3], a[3])):
                view = wider
        return view, best_w[view]

    oof_lex: dict[float, np.ndarray] = {}
    if lexical:
        L = L.tocsr()
        for la in cfg.lexical_alphas:
            o = np.zeros(n)
            for tr, te in folds:
                coef, icpt = _lexical_fit(L[tr], y[tr], la)
                o[te] = L[te] @ coef + icpt
                bar.update(1)
            oof_lex[la] = o

    def best_blend(oof: np.ndarray, label: str) -> tuple[float, float, float, np.ndarray]:
        """(score, lexical alpha, lambda, per-fold APGR) of the best blend with
        a lexical part (lambda > 0: this candidate has one by definition)."""
        best = (float("-inf"), cfg.lexical_alphas[0], 0.0, np.full(k, np.nan))
        for la, o in oof_lex.items():
            for lw in cfg.lexical_weights:
                if lw <= 0:
                    continue
                per_b = _per_fold_apgr(_z(oof, oof) + lw * _z(o, o), fast, strong, folds)
                sc = _mean(per_b)
                grid.append({"candidate": label, "lexical_alpha": la, "lexical_weight": lw, "inner_apgr": sc})
                if sc > best[0] or best[2] == 0.0:
                    best = (sc, la, lw, per_b)
        return best

    # Every candidate's inner out-of-fold APGR on the same folds, and how to build it.
    scored: dict[str, dict[str, Any]] = {}
    for c in cands:
        if c == "baseline":
            oof = np.zeros(n)
            for tr, te in folds:
                oof[te] = score_baseline(fit_baseline(E[tr], metrics.needs_strong(fast[tr], strong[tr])), E[te])
                bar.update(1)
            per = _per_fold_apgr(oof, fast, strong, folds)
            scored[c] = {"score": _mean(per), "per": per, "oof": oof}
        elif c == "embedding":
            sc, alpha, oof, per = ridge[(views[0], 0.0)]
            scored[c] = {"score": sc, "per": per, "oof": oof, "ridge": (views[0], 0.0, alpha)}
        else:
            view, w = best_ridge([0.0] if c == "lexical" else [w for w in cfg.feature_weights if w > 0])
            sc, alpha, oof, per = ridge[(view, w)]
            scored[c] = {"score": sc, "per": per, "oof": oof, "ridge": (view, w, alpha)}
            if c in LEXICAL_CANDIDATES:
                sc, la, lw, per = best_blend(oof, c)
                scored[c].update(score=sc, per=per, lex=(la, lw))
    bar.close()
    best = max(cands, key=lambda c: scored[c]["score"])
    chosen = best
    if cfg.one_se_rule:
        # the simplest candidate that the best one does not beat clearly
        chosen = next(c for c in cands if c == best or not _clearly_better(scored[best]["per"], scored[c]["per"], cfg.clear_se))
    ch = scored[chosen]
    oof = ch["oof"]
    if chosen == "baseline":
        arrays, view, alpha, w = baseline_arrays(E, F, fast, strong), baseline_dim(E), 0.0, 0.0
    else:
        view, w, alpha = ch["ridge"]
        (arrays,) = _ridge_path(E[:, :view], F, y, (alpha,), w)
    # z-score the ranker with its inner out-of-fold statistics (the blend adds z-scores)
    ma, sa = float(oof.mean()), float(oof.std() or 1.0)
    for key in ("coef_emb", "coef_feat"):
        arrays[key] = arrays[key] / sa
    arrays["intercept"] = np.float64((float(arrays["intercept"]) - ma) / sa)
    blended, lex_alpha, lam = (oof - ma) / sa, None, 0.0
    if "lex" in ch:
        lex_alpha, lam = ch["lex"]
        o = oof_lex[lex_alpha]
        ml, sl = float(o.mean()), float(o.std() or 1.0)
        coef, icpt = _lexical_fit(L, y, lex_alpha)
        arrays["lex_coef"] = (coef * lam / sl).astype(np.float32)
        arrays["lex_bias"] = np.float64(lam * (icpt - ml) / sl)
        blended = blended + lam * (o - ml) / sl
    a, b = _platt(blended, metrics.needs_strong(fast, strong))
    arrays["platt_a"], arrays["platt_b"] = np.float64(a), np.float64(b)
    table = [{"candidate": c, "inner_apgr": scored[c]["score"], "per_fold": [float(x) for x in scored[c]["per"]]} for c in cands]
    return Fitted(arrays, alpha, w, ch["score"], view, blended, grid, lex_alpha, lam, procedure_name(cfg, L is not None),
                  candidate=chosen, candidates=table)


def procedure_name(cfg: TrainConfig, lexical: bool) -> str:
    """The name an evaluation or artifact records: the full candidate choice,
    or the older procedures that a restricted candidate list reproduces."""
    c = tuple(x for x in cfg.candidates if lexical or x not in LEXICAL_CANDIDATES)
    if c == ("cheap", "full"):
        return "ridge-gain-lex/3"
    if c == ("cheap",):
        return "ridge-gain/1"
    return PROCEDURE if lexical else "select/4"
