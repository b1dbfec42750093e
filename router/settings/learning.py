"""Learning from live traffic (router/learning/): shadow requests, the judge
and the outcome log the graded pairs go to."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from router.settings.section import Section


class OutcomeLogSettings(Section):
    """Where graded pairs go (router/learning/outcome_log.py): a Redis stream trimmed
    to `max_records` when a redis_url is known, else a local JSONL file."""

    backend: Literal["auto", "jsonl", "redis"] = "auto"  # auto: redis when a redis_url is known
    redis_url: str | None = None  # None: the cache's redis_url
    stream_key: str = "thinkgate:outcomes"
    max_records: int = Field(100_000, ge=10, description="stream trimmed with MAXLEN ~")
    path: str = "~/.cache/thinkgate/outcomes.jsonl"  # the embedded default's log
    timeout_ms: float = Field(500.0, gt=0)


class LearningSettings(Section):
    """Learning from live traffic (router/learning/): shadow-ask the route not taken,
    grade the pair with a judge model, append it to the outcome log."""

    shadow_rate: float = Field(0.0, ge=0, le=1, description="share of live requests shadowed")
    judge: str | None = None  # a configured model name; None: nothing is graded, nothing shadowed
    grade_escalations: bool = True  # Self-Ref escalations hold both answers: grade them too
    budget_tokens_per_hour: int | None = Field(None, ge=1, description="shadow + judge tokens; None: no cap")
    budget_usd_per_hour: float | None = Field(None, gt=0, description="shadow + judge cost; None: no cap")
    max_concurrent: int = Field(4, ge=1, description="shadow jobs at once; more are dropped, not queued")
    judge_max_tokens: int = Field(16, ge=1)
    answer_chars: int = Field(4000, ge=100, description="each answer is cut to this for the judge")
    outcome_log: OutcomeLogSettings = Field(default_factory=OutcomeLogSettings)
