"""Difficulty-driven knobs, once P is known: the joint policy's cut and Self-Ref
threshold for this P (routing.joint), and reasoning effort (routing.effort:
DEER's exit threshold and the thinking budget by P, capped by the request's
own `reasoning_effort` or `thinking.budget_tokens`). Each writes the request's
controls only where neither the client nor an operator rule set them.
"""

from __future__ import annotations

from dataclasses import replace

from policies.joint import JointPolicy
from router.config import RoutingSettings
from router.types import ChatRequest


def joint_cut(cfg: RoutingSettings, req: ChatRequest, p: float, threshold: float, rule_threshold: float | None) -> float:
    """The P cut to reason at once; sets this P's Self-Ref threshold on the request."""
    if cfg.joint is None:
        return threshold
    p_hi = rule_threshold if rule_threshold is not None else cfg.joint.p_hi
    policy = JointPolicy.from_lists(p_hi, cfg.joint.thresholds, cfg.joint.edges, cfg.joint.slope)
    if req.controls.selfref_threshold is None:
        req.controls = replace(req.controls, selfref_threshold=policy.threshold_at(p))
    return policy.p_hi


def request_cap(cfg: RoutingSettings, req: ChatRequest) -> int | None:
    """The thinking budget the client asked for, if any (the smaller of the two asks)."""
    caps = []
    effort = req.body.get("reasoning_effort")
    if isinstance(effort, str) and effort in cfg.effort_caps:
        caps.append(cfg.effort_caps[effort])
    thinking = req.body.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int) and thinking["budget_tokens"] > 0:
        caps.append(thinking["budget_tokens"])
    return min(caps) if caps else None


def apply_effort(cfg: RoutingSettings, req: ChatRequest, p: float | None) -> None:
    deer = req.controls.deer
    threshold, tokens = deer.threshold, deer.thinking_tokens
    if p is not None:
        step = next((s for s in cfg.effort if p < s.below), None)
        if step is not None:
            threshold = threshold if threshold is not None else step.deer_threshold
            tokens = tokens if tokens is not None else step.thinking_tokens
    cap = request_cap(cfg, req)
    if cap is not None:
        tokens = cap if tokens is None else min(tokens, cap)
    if (threshold, tokens) != (deer.threshold, deer.thinking_tokens):
        req.controls = replace(req.controls, deer=replace(deer, threshold=threshold, thinking_tokens=tokens))
