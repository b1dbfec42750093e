"""How well each Self-Ref mode separates right fast answers from wrong ones.

Pure functions over graded `Record`s: AUROC (with a bootstrap interval), the
precision/escalation trade-off of every threshold, and the choice of the
threshold that escalates the fewest prompts while the answers kept on the fast
route meet the target precision. `analyse` runs them all, per mode, into the
result that `calibrate.selfref_report` prints and plots and `--out` saves.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from calibrate.selfref_data import Record
from policies import selfref

ALL_MODES = selfref.MODES


def auroc(scores: list[float | None], labels: list[bool]) -> float | None:
    """Area under the ROC curve of `scores` predicting `labels` (ties count half);
    items without a score are left out; None when one class is empty."""
    pairs = [(s, y) for s, y in zip(scores, labels) if s is not None]
    pos = sum(1 for _, y in pairs if y)
    neg = len(pairs) - pos
    if pos == 0 or neg == 0:
        return None
    pairs.sort(key=lambda p: p[0])
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2  # ranks are 1-based
        rank_sum += avg_rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def auroc_ci(scores: list[float | None], labels: list[bool], n_boot: int = 500, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile-bootstrap interval of `auroc` (resampling prompts)."""
    pairs = [(s, y) for s, y in zip(scores, labels) if s is not None]
    if not pairs:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(n_boot):
        sample = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        a = auroc([s for s, _ in sample], [y for _, y in sample])
        if a is not None:
            values.append(a)
    if len(values) < n_boot // 2:
        return None
    return selfref.quantile(values, 0.025), selfref.quantile(values, 0.975)


@dataclass
class Point:
    threshold: float
    escalation_rate: float
    kept: int
    kept_accuracy: float | None  # None when nothing is kept


def tradeoff(scores: list[float | None], labels: list[bool], on_missing: str = "trust") -> list[Point]:
    """Every distinct operating point, from escalating nothing to everything.

    An answer is kept when `not should_escalate(score, threshold, on_missing)`.
    """
    n = len(labels)
    if n == 0:
        return []
    cands = sorted({s for s in scores if s is not None})
    thresholds = [0.0] + [c for c in cands if c > 0.0] + [1.0 + 1e-9]
    # just above each score too, so ties can be cut on both sides
    out = []
    for t in thresholds:
        kept = [y for s, y in zip(scores, labels) if not selfref.should_escalate(s, t, on_missing)]
        acc = sum(kept) / len(kept) if kept else None
        out.append(Point(t, 1 - len(kept) / n, len(kept), acc))
    return out


def choose(points: list[Point], target: float, min_kept: int = 1) -> Point:
    """Fewest escalations with kept accuracy >= target over at least `min_kept`
    kept answers (a guard against a target met by two lucky answers); everything
    escalated if no point reaches it."""
    ok = [p for p in points if p.kept_accuracy is not None and p.kept_accuracy >= target and p.kept >= min_kept]
    if ok:
        return min(ok, key=lambda p: (p.escalation_rate, p.threshold))
    return Point(1.0 + 1e-9, 1.0, 0, None)


def table_rows(points: list[Point], steps: int = 10) -> list[Point]:
    """The operating point closest to (at or below) each escalation rate 0, 10, ..., 100 %."""
    rows = []
    for k in range(steps + 1):
        goal = k / steps
        below = [p for p in points if p.escalation_rate <= goal + 1e-12]
        if below:
            rows.append(max(below, key=lambda p: p.escalation_rate))
    dedup: list[Point] = []
    for p in rows:
        if not dedup or dedup[-1] is not p:
            dedup.append(p)
    return dedup


def analyse(
    records: list[Record], target: float, on_missing: str = "trust", modes=ALL_MODES, min_kept: int = 1
) -> dict[str, Any]:
    done = [r for r in records if r.error is None]
    labels = [r.correct for r in done]
    result: dict[str, Any] = {
        "n": len(done),
        "errors": len(records) - len(done),
        "accuracy": sum(labels) / len(labels) if labels else None,
        "target_precision": target,
        "on_missing": on_missing,
        "min_kept": min_kept,
        "modes": {},
    }
    for mode in modes:
        scores = [r.conf.get(mode) for r in done]
        covered = sum(s is not None for s in scores)
        points = tradeoff(scores, labels, on_missing)
        pick = choose(points, target, min_kept) if points else None
        result["modes"][mode] = {
            "auroc": auroc(scores, labels),
            "auroc_ci95": auroc_ci(scores, labels),
            "coverage": covered / len(done) if done else 0.0,
            "threshold": None if pick is None else pick.threshold,
            "escalation_rate": None if pick is None else pick.escalation_rate,
            "kept_accuracy": None if pick is None else pick.kept_accuracy,
            "kept": None if pick is None else pick.kept,
            "table": [asdict(p) for p in table_rows(points)],
            "curve": [asdict(p) for p in points],
        }
    usable = {
        m: v
        for m, v in result["modes"].items()
        if v["auroc"] is not None and v["coverage"] > 0.5 and v["escalation_rate"] is not None and v["escalation_rate"] < 1
    }
    if usable:
        best = min(usable, key=lambda m: (usable[m]["escalation_rate"], -(usable[m]["auroc"] or 0)))
        result["recommended"] = {"mode": best, "threshold": usable[best]["threshold"]}
    else:
        result["recommended"] = None
    us = [r.score_us for r in done if r.score_us > 0]
    lat = [r.latency_s for r in done if r.latency_s > 0]
    result["score_us_median"] = statistics.median(us) if us else None
    result["score_us_p99"] = _q(us, 0.99)
    result["generation_s_median"] = statistics.median(lat) if lat else None
    return result


def _q(xs: list[float], q: float) -> float | None:
    return selfref.quantile(xs, q) if xs else None
