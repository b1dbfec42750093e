"""The rules step, before the classifier: find the operator rule that matches
(policies.rules) and apply its actions to this request. A route is returned
for `_decide`; a threshold overrides the classifier's cut; DEER and Self-Ref
settings become the request's controls unless the client set them itself (a
client control the operator allowed for its key is the client's explicit ask).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from policies import rules as rule_policy
from router.config import RuleSettings
from router.types import ChatRequest, Decision, DeerControl, Route


@dataclass(frozen=True)
class RuleEffect:
    name: str
    route: Route | None = None
    threshold: float | None = None


def apply(rules: list[RuleSettings], req: ChatRequest, d: Decision) -> RuleEffect | None:
    if not rules:
        return None
    rule = rule_policy.first_match(rules, rule_policy.facts(req))
    if rule is None:
        return None
    d.rule = rule.name
    controls = req.controls
    if rule.deer is not None and controls.deer == DeerControl():
        deer = DeerControl(enabled=rule.deer != "off", threshold=rule.deer if isinstance(rule.deer, float) else None)
        controls = replace(controls, deer=deer)
    if rule.selfref_threshold is not None and controls.selfref_threshold is None:
        controls = replace(controls, selfref_threshold=rule.selfref_threshold)
    req.controls = controls
    req.rule = rule.name  # part of the cache key: a rule's route must not be bypassed by another's hit
    return RuleEffect(rule.name, rule.route, rule.threshold)
