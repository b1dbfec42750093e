"""The joint policy over (P from the classifier, the fast answer's confidence).

  P >= p_hi                      reason at once
  otherwise                      answer fast, and escalate when the answer's
                                 confidence < t(P), a threshold by P bin

`edges` are the upper edges of the P bins below p_hi (ascending) and
`thresholds` has one more entry than `edges`: t(P) = thresholds[i] for the
first i with P < edges[i], the last entry above every edge, plus `slope` * P.
A threshold of 0 never escalates, one above 1 always does. With no edges and
no slope t(P) is constant and the policy is "classifier + Self-Ref" tuned
together rather than apart. With a slope (one bin) the fast answers are ranked
by one score, confidence - slope * P, and escalated below a cut: the two
signals combined into one ranking, the family `calibrate joint` fits by
default (one parameter beside the cut, so it needs little data).
Pure; `calibrate/joint.py` fits it from outcome data.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from router.types import Route


@dataclass(frozen=True)
class JointPolicy:
    p_hi: float
    thresholds: tuple[float, ...]
    edges: tuple[float, ...] = ()
    slope: float = 0.0

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.edges) + 1:
            raise ValueError(f"joint policy: {len(self.edges)} bin edges need {len(self.edges) + 1} thresholds, got {len(self.thresholds)}")
        if list(self.edges) != sorted(self.edges):
            raise ValueError("joint policy: bin edges must be ascending")
        if self.slope == 0 and any(t < 0 for t in self.thresholds):
            raise ValueError("joint policy: thresholds must be >= 0")  # (with a slope the base may be below 0)
        if self.slope < 0:
            raise ValueError("joint policy: slope must be >= 0 (a higher P never makes escalation less likely)")

    @classmethod
    def from_lists(cls, p_hi: float, thresholds: Sequence[float], edges: Sequence[float] = (), slope: float = 0.0) -> JointPolicy:
        return cls(float(p_hi), tuple(float(t) for t in thresholds), tuple(float(e) for e in edges), float(slope))

    def first_route(self, p: float) -> Route:
        return "reasoning" if p >= self.p_hi else "fast"

    def threshold_at(self, p: float) -> float:
        return self.thresholds[bisect.bisect_right(self.edges, p)] + self.slope * p

    def escalate(self, p: float, confidence: float | None, on_missing: str = "trust") -> bool:
        """On the fast route: does this answer go to the reasoning model?"""
        t = self.threshold_at(p)
        if confidence is None:
            return on_missing == "escalate" and t > 0
        return confidence < t


def outcome(policy: JointPolicy, p: float, confidence: float | None, on_missing: str = "trust") -> str:
    """fast | escalated | reasoning: where a prompt ends under the policy."""
    if policy.first_route(p) == "reasoning":
        return "reasoning"
    return "escalated" if policy.escalate(p, confidence, on_missing) else "fast"
