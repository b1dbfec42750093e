"""Prometheus view of the learning loop: `registry.register(LearningCollector(learner, slot))`.

    thinkgate_learning_jobs{event="sampled|started|recorded|failed|ungraded|over_budget|busy|..."}
    thinkgate_learning_budget_tokens / _usd      spent in the last hour
    thinkgate_router_artifact_info{version=...}  1 for the artifact in use
    thinkgate_router_reloads{result="ok|refused"}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class LearningCollector:
    def __init__(self, learner: Any, slot: Any) -> None:
        self.learner = learner
        self.slot = slot

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        out: list[Any] = []
        if self.learner is not None:
            jobs = CounterMetricFamily("thinkgate_learning_jobs", "shadow and escalation grading, by event", labels=["event"])
            for event, n in self.learner.stats.as_dict().items():
                jobs.add_metric([event], n)
            budget = self.learner.budget.state()
            out += [
                jobs,
                GaugeMetricFamily("thinkgate_learning_budget_tokens", "learning tokens spent in the last hour", value=budget["tokens"]),
                GaugeMetricFamily("thinkgate_learning_budget_usd", "learning USD spent in the last hour", value=budget["usd"]),
            ]
        if self.slot is not None:
            info = GaugeMetricFamily("thinkgate_router_artifact_info", "the classifier artifact in use", labels=["version"])
            info.add_metric([self.slot.current.version], 1)
            reloads = CounterMetricFamily("thinkgate_router_reloads", "artifact reloads", labels=["result"])
            reloads.add_metric(["ok"], self.slot.reloads)
            reloads.add_metric(["refused"], self.slot.refused)
            out += [info, reloads]
        return out
