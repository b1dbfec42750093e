"""Operator rules (`rules:`), matched ahead of the classifier by policies/rules.py
and router/pipeline/rules.py: what a rule looks at, and what it does."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from router.settings.section import Section


class RuleMatch(Section):
    """What a rule looks at (every given key must match; an empty match matches all).
    Lists mean "any of"; regexes are Python `re.search`, compiled at load."""

    alias: list[str] | None = None
    tenant: list[str] | None = None
    tools: bool | None = None  # the request carries tools (or functions)
    min_tokens: int | None = Field(None, ge=0, description="prompt length, estimated at ~4 characters a token")
    max_tokens: int | None = Field(None, ge=0)
    last_user: str | None = None  # regex on the last user turn
    system: str | None = None  # regex on the system (or developer) prompt
    user: list[str] | None = None  # the OpenAI `user` field
    metadata: dict[str, list[str]] = Field(default_factory=dict)  # metadata.KEY is one of
    headers: dict[str, list[str]] = Field(default_factory=dict)  # request header is one of

    @field_validator("alias", "tenant", "user", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("metadata", "headers", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): [x] if isinstance(x, str) else x for k, x in v.items()}
        return v

    @field_validator("last_user", "system")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regex: {e}") from None
        return v

    @field_validator("headers")
    @classmethod
    def _header_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {k.lower(): x for k, x in v.items()}
        secret = {"authorization", "cookie", "x-api-key", "proxy-authorization"} & set(out)
        if secret:
            raise ValueError(f"rules may not match on credentials ({', '.join(sorted(secret))})")
        return out


class RuleSettings(Section):
    """One operator rule, applied before the classifier (policies.rules)."""

    name: str = Field(min_length=1)
    priority: int = 0  # higher first; equal priorities keep file order; the first match fires
    match: RuleMatch = Field(default_factory=RuleMatch)
    route: Literal["fast", "reasoning"] | None = None
    threshold: float | None = Field(None, ge=0, le=1, description="the classifier's cut for this request")
    deer: Literal["on", "off"] | float | None = Field(None, description="on, off, or a DEER exit threshold in [0, 1]")
    selfref_threshold: float | None = Field(None, ge=0)

    @field_validator("deer", mode="before")
    @classmethod
    def _yaml_bool(cls, v: Any) -> Any:
        # YAML reads a bare `off` / `on` as a boolean
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _has_action(self) -> RuleSettings:
        if self.route is None and self.threshold is None and self.deer is None and self.selfref_threshold is None:
            raise ValueError(f"rule '{self.name}' has no action (route, threshold, deer or selfref_threshold)")
        if isinstance(self.deer, float) and not 0 <= self.deer <= 1:
            raise ValueError(f"rule '{self.name}': deer threshold must be in [0, 1]")
        m = self.match
        if m.min_tokens is not None and m.max_tokens is not None and m.min_tokens > m.max_tokens:
            raise ValueError(f"rule '{self.name}': match.min_tokens is above match.max_tokens")
        return self
