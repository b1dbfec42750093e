"""`thinkgate calibrate joint`: fit the joint policy (policies.joint) from outcomes
that carry the classifier's P and the fast answer's confidence, and compare its
quality / reasoning-share curve with the classifier alone and Self-Ref alone.

    thinkgate calibrate joint --outcomes out/outcomes.jsonl --target-share 0.3 --out out/joint.json

Each outcome row needs `fast`, `strong`, `fast_confidence` (the `collect`
helper fills it from the fast model's logprobs) and `p` (the classifier's
P(needs reasoning)); without `p`, --model scores the prompts with an artifact.
The rows are split in two halves: the policy is fitted on the first, and
every curve (joint, classifier alone, Self-Ref alone) is measured on the
second, so the joint policy's extra parameters buy it no in-sample advantage.

Two families (--family):
- `linear` (default): rank the prompts by one score, confidence - slope * P,
  and escalate below a cut (p_hi infinite). The slope is the one whose curve
  has the best system APGR on the fit half (the smallest among equals; slope
  0 is Self-Ref alone); the held-out curve is every cut of that score, as the
  single signals' curves are every cut of theirs. One parameter beside the
  cut, so a few dozen prompts can fit it.
- `bins`: a grid over p_hi and one confidence threshold per P bin, whose
  fit-half Pareto policies are measured on the held-out half. Many
  parameters: on 80 fit prompts it did no better than Self-Ref alone.
A prompt's outcome under a policy: reasoning at once (strong score, strong
cost), kept fast (fast score, fast cost), or escalated (strong score, both
costs). Reasoning share counts every prompt that reached the reasoning model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from policies.joint import JointPolicy

NEVER, ALWAYS = 0.0, 1.01  # confidence thresholds: never / always escalate


@dataclass
class Point:
    share: float  # prompts that reached the reasoning model
    quality: float
    cost: float  # mean per prompt, in the unit of --fast-cost / --strong-cost
    policy: dict[str, Any] | None = None


@dataclass
class Data:
    p: np.ndarray
    conf: np.ndarray  # NaN where the fast answer had no confidence
    fast: np.ndarray
    strong: np.ndarray
    fast_cost: np.ndarray
    strong_cost: np.ndarray

    def subset(self, idx: np.ndarray) -> Data:
        return Data(*(getattr(self, k)[idx] for k in ("p", "conf", "fast", "strong", "fast_cost", "strong_cost")))


def simulate(d: Data, policy: JointPolicy, on_missing: str = "trust") -> Point:
    at_once = d.p >= policy.p_hi
    t = np.asarray(policy.thresholds)[np.searchsorted(np.asarray(policy.edges), d.p, side="right")] + policy.slope * d.p
    missing = np.isnan(d.conf)
    esc = np.where(missing, (on_missing == "escalate") & (t > 0), np.nan_to_num(d.conf, nan=1.0) < t) & ~at_once
    strong = at_once | esc
    quality = np.where(strong, d.strong, d.fast).mean()
    cost = np.where(at_once, d.strong_cost, d.fast_cost + np.where(esc, d.strong_cost, 0.0)).mean()
    pol = {"p_hi": policy.p_hi, "edges": list(policy.edges), "thresholds": list(policy.thresholds), "slope": policy.slope}
    return Point(float(strong.mean()), float(quality), float(cost), pol)


def classifier_curve(d: Data) -> list[Point]:
    """P alone: reason when P >= cut, never escalate."""
    cuts = np.unique(np.concatenate([d.p, [np.inf]]))
    return [simulate(d, JointPolicy(float(c), (NEVER,))) for c in cuts]


def selfref_curve(d: Data, on_missing: str = "trust") -> list[Point]:
    """Self-Ref alone: everything fast first, escalate below a confidence cut."""
    cuts = np.unique(np.concatenate([d.conf[~np.isnan(d.conf)], [NEVER, ALWAYS]]))
    return [simulate(d, JointPolicy(math.inf, (float(c),)), on_missing) for c in cuts]


def joint_grid(d: Data, bins: int = 2, steps: int = 10, on_missing: str = "trust") -> list[Point]:
    qs = np.linspace(0, 1, steps + 1)
    p_his = sorted(set(np.quantile(d.p, np.linspace(0.5, 1.0, steps // 2 + 1)).tolist()) | {math.inf})
    edges = tuple(float(e) for e in np.quantile(d.p, np.linspace(0, 1, bins + 1)[1:-1])) if bins > 1 else ()
    known = d.conf[~np.isnan(d.conf)]
    cuts = sorted(set(np.quantile(known, qs).tolist()) | {NEVER, ALWAYS}) if len(known) else [NEVER, ALWAYS]
    points = []
    for p_hi in p_his:
        for ts in product(cuts, repeat=len(edges) + 1):
            points.append(simulate(d, JointPolicy(float(p_hi), tuple(float(t) for t in ts), edges), on_missing))
    return points


SLOPES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


def linear_curve(d: Data, slope: float, on_missing: str = "trust") -> list[Point]:
    """Every cut of the score confidence - slope * P (escalate below it)."""
    known = ~np.isnan(d.conf)
    score = d.conf[known] - slope * d.p[known]
    # the score lies in [-slope, 1]: a cut of -slope never escalates, ALWAYS always does
    cuts = np.unique(np.concatenate([score, [NEVER - slope, ALWAYS]]))
    # escalate when conf < cut + slope * P  <=>  score < cut
    return [simulate(d, JointPolicy(math.inf, (float(c),), (), slope), on_missing) for c in cuts]


def best_slope(d: Data, slopes: tuple[float, ...] = SLOPES, on_missing: str = "trust") -> tuple[float, dict[float, float]]:
    """The slope whose curve has the best system APGR on `d` (the smallest among equals)."""
    qf, qs = float(d.fast.mean()), float(d.strong.mean())
    scores = {s: system_apgr(linear_curve(d, s, on_missing), qf, qs) for s in slopes}
    best = max(slopes, key=lambda s: (np.nan_to_num(scores[s], nan=-np.inf), -s))
    return best, scores


def frontier(points: list[Point], key: str = "share") -> list[Point]:
    """The Pareto set: best quality for its share (or cost), quality rising with it."""
    out: list[Point] = []
    for pt in sorted(points, key=lambda p: (getattr(p, key), -p.quality)):
        if not out or pt.quality > out[-1].quality + 1e-12:
            out.append(pt)
    return out


def system_apgr(points: list[Point], q_fast: float, q_strong: float, grid: int = 201) -> float:
    """Mean share of the fast-to-strong gap recovered over reasoning shares 0..1,
    on the Pareto front with linear interpolation (mixing two policies at random
    reaches any point between them); a share beyond the front keeps its best."""
    gap = q_strong - q_fast
    if gap <= 0:
        return float("nan")
    ends = [Point(0.0, q_fast, 0.0), Point(1.0, q_strong, 0.0)]
    front = frontier(points + ends)
    xs = np.linspace(0, 1, grid)
    q = np.interp(xs, [p.share for p in front], [p.quality for p in front])
    return float(((q - q_fast) / gap).mean())


def choose(front: list[Point], q_fast: float, q_strong: float, target: dict[str, float | None]) -> Point | None:
    if target.get("target_share") is not None:
        ok = [p for p in front if p.share <= target["target_share"] + 1e-12]  # type: ignore[operator]
        return max(ok, key=lambda p: (p.quality, -p.share)) if ok else None
    if target.get("target_pgr") is not None:
        need = q_fast + target["target_pgr"] * (q_strong - q_fast)  # type: ignore[operator]
        ok = [p for p in front if p.quality >= need - 1e-12]
        return min(ok, key=lambda p: (p.share, -p.quality)) if ok else None
    if target.get("max_cost") is not None:
        ok = [p for p in front if p.cost <= target["max_cost"] + 1e-12]  # type: ignore[operator]
        return max(ok, key=lambda p: (p.quality, -p.cost)) if ok else None
    return None


def halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The (fit, held-out) row indices fit() uses."""
    idx = np.random.default_rng(seed).permutation(n)
    return idx[: n // 2], idx[n // 2 :]


def learned_p(prompts: list[Any], fast: np.ndarray, strong: np.ndarray, seed: int = 0, folds: int = 5,
              embedder: str = "auto") -> np.ndarray:
    """P from a classifier trained on the fit half's own outcomes (the user's
    traffic), never on the held-out half: out-of-fold on the fit half (so the
    joint policy is fitted on P it would see in serving), and from one fit on
    the whole fit half for the held-out rows. The procedure is `calibrate
    train`'s (select-lex/4)."""
    from calibrate import train
    from calibrate.commands import featurise
    from calibrate.folds import kfold
    from calibrate.outcomes import Outcomes

    n = len(prompts)
    fit_idx, eval_idx = halves(n, seed)
    o = Outcomes([str(i) for i in range(n)], list(prompts), list(map(float, fast)), list(map(float, strong)), [])
    E, F, _ = featurise(o, embedder, True, False)
    L = train.lexical_matrix([o.messages(i) for i in range(n)]).tocsr()
    p = np.zeros(n)
    fa, st = np.asarray(fast, float), np.asarray(strong, float)
    for tr, te in kfold(len(fit_idx), folds, seed):
        a, b = fit_idx[tr], fit_idx[te]
        m = train.fit(E[a], F[a], fa[a], st[a], progress=False, L=L[a])
        p[b] = m.probs(m.scores(E[b], F[b], L[b]))
    m = train.fit(E[fit_idx], F[fit_idx], fa[fit_idx], st[fit_idx], progress=False, L=L[fit_idx])
    p[eval_idx] = m.probs(m.scores(E[eval_idx], F[eval_idx], L[eval_idx]))
    return p


def fit(d: Data, target: dict[str, float | None], bins: int = 2, seed: int = 0, on_missing: str = "trust",
        family: str = "linear") -> dict[str, Any]:
    fit_idx, eval_idx = halves(len(d.p), seed)
    a, b = d.subset(fit_idx), d.subset(eval_idx)
    extra: dict[str, Any] = {}
    if family == "linear":
        slope, by_slope = best_slope(a, on_missing=on_missing)
        cands = frontier(linear_curve(a, slope, on_missing))
        held = linear_curve(b, slope, on_missing)  # every cut of the fitted score, as for the single signals
        extra = {"slope": slope, "fit_apgr_by_slope": {str(k): v for k, v in by_slope.items()}}
    elif family == "bins":
        cands = frontier(joint_grid(a, bins=bins, on_missing=on_missing))
        # the fit half's Pareto policies, measured on the held-out half
        held = [simulate(b, JointPolicy.from_lists(**p.policy), on_missing) for p in cands if p.policy]  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown joint family {family!r} (linear, bins)")
    qf, qs = float(b.fast.mean()), float(b.strong.mean())
    curves = {"joint": held, "classifier": classifier_curve(b), "selfref": selfref_curve(b, on_missing)}
    result: dict[str, Any] = {
        "n_fit": len(fit_idx), "n_eval": len(eval_idx), "eval_idx": eval_idx.tolist(), "family": family, "bins": bins,
        "q_fast": qf, "q_strong": qs, **extra,
        "apgr": {k: system_apgr(v, qf, qs) for k, v in curves.items()},
        "curves": {k: [asdict(p) for p in frontier(v)] for k, v in curves.items()},
    }
    chosen = choose(cands, float(a.fast.mean()), float(a.strong.mean()), target)
    if chosen is not None and chosen.policy is not None:
        result["policy"] = chosen.policy
        result["policy_fit"] = asdict(chosen)
        result["policy_eval"] = asdict(simulate(b, JointPolicy.from_lists(**chosen.policy), on_missing))
    return result


# ---------------------------------------------------------------- loading and CLI


def load(paths: list[str], fast_cost: float, strong_cost: float) -> tuple[Any, Data, list[int]]:
    """Outcomes plus their `p` and `fast_confidence` columns (rows lacking `p` are listed)."""
    from calibrate.commands import load_outcomes

    o = load_outcomes(paths)
    raw: list[dict[str, Any]] = []
    for path in paths:
        raw += [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    p = np.array([float(r["p"]) if r.get("p") is not None else np.nan for r in raw])
    conf = np.array([float(r["fast_confidence"]) if r.get("fast_confidence") is not None else np.nan for r in raw])
    fc = np.array([float(r.get("fast_cost") or fast_cost) for r in raw])
    sc = np.array([float(r.get("strong_cost") or strong_cost) for r in raw])
    no_p = [i for i in range(len(raw)) if np.isnan(p[i])]
    return o, Data(p, conf, np.asarray(o.fast, float), np.asarray(o.strong, float), fc, sc), no_p


def configure(p: argparse.ArgumentParser) -> None:
    from calibrate.commands.common import _add_target_args

    p.add_argument("--outcomes", action="append", required=True, metavar="FILE", help="outcome JSONL with p and fast_confidence")
    p.add_argument("--model", help="artifact that scores P for rows without a `p` column (e.g. default)")
    p.add_argument("--embedder", default="auto", choices=["auto", "onnx", "onnx-fp32", "torch", "hash"], help="sentence encoder for the features (auto: int8 ONNX, else torch; hash: tests only)")
    p.add_argument("--family", choices=["linear", "bins"], default="linear",
                   help="linear: one score, confidence - slope * P (default); bins: p_hi and a threshold per P bin")
    p.add_argument("--bins", type=int, default=2, help="--family bins: P bins for the confidence threshold t(P)")
    p.add_argument("--on-missing", choices=["trust", "escalate"], default="trust",
                   help="a fast answer without a confidence: keep it (trust) or escalate it")
    p.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds")
    p.add_argument("--out", help="write the JSON result here")
    p.add_argument("--plot", help="save the quality / reasoning-share plot here (PNG)")
    _add_target_args(p)


def run(args: argparse.Namespace) -> int:
    from calibrate.commands.common import _targets

    o, d, no_p = load(args.outcomes, args.fast_cost, args.strong_cost)
    if no_p:
        if not args.model:
            print(f"calibrate joint: {len(no_p)} rows have no `p`; pass --model ARTIFACT to score them", file=sys.stderr)
            return 2
        d.p[no_p] = score_with(args.model, o.subset(no_p), args.embedder)
    if np.isnan(d.conf).all():
        print("calibrate joint: no row has `fast_confidence` (run the collect helper with logprobs)", file=sys.stderr)
        return 2
    target = _targets(args, default_pgr=0.8)
    result = fit(d, target, bins=args.bins, seed=args.seed, on_missing=args.on_missing, family=args.family)
    print(format_result(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.plot)
    return 0


def score_with(model: str, o: Any, embedder: str) -> np.ndarray:
    from calibrate.commands import featurise
    from policies.difficulty import DifficultyClassifier, resolve

    path = resolve(model)
    E, F, embedder_id = featurise(o, embedder, True, False)
    clf = DifficultyClassifier.load(path, embedder_id=embedder_id.split("@")[0])
    return np.asarray(clf.predict_many(F, E, [o.messages(i) for i in range(len(o))]), float)


def format_result(r: dict[str, Any]) -> str:
    lines = [
        f"fit on {r['n_fit']} prompts, measured on {r['n_eval']} held out: fast quality {r['q_fast']:.3f}, "
        f"strong {r['q_strong']:.3f}",
        f"system APGR (quality vs reasoning share): joint {r['apgr']['joint']:.3f}, "
        f"classifier alone {r['apgr']['classifier']:.3f}, Self-Ref alone {r['apgr']['selfref']:.3f}",
    ]
    if "policy" in r:
        pol, ev = r["policy"], r["policy_eval"]
        lines.append(f"chosen: p_hi={pol['p_hi']:.4f} edges={[round(e, 4) for e in pol['edges']]} "
                     f"thresholds={[round(t, 4) for t in pol['thresholds']]} slope={pol.get('slope', 0.0):g}")
        lines.append(f"  held out: reasoning share {100 * ev['share']:.1f}%, quality {ev['quality']:.3f}, cost {ev['cost']:.3f}")
    else:
        lines.append("chosen: none (no policy on the fit half meets the target)")
    return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in r["curves"].items():
        xs = [0.0] + [p["share"] for p in pts] + [1.0]
        ys = [r["q_fast"]] + [p["quality"] for p in pts] + [r["q_strong"]]
        ax.plot(xs, ys, marker=".", label=f"{name} (APGR {r['apgr'][name]:.3f})")
    ax.set_xlabel("reasoning share")
    ax.set_ylabel("quality")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
