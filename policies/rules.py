"""Operator rules ahead of the classifier: which rule (if any) a request matches.

Pure: the facts are read from the parsed request, the rules come validated
from settings (`rules:`); nothing here does I/O. Precedence: higher `priority`
first, equal priorities in file order, and the first rule that matches fires
(one rule per request, so two rules never half-apply each other's actions).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from policies.features import message_text
from router.config import RuleSettings
from router.types import ChatRequest


@dataclass(frozen=True)
class Facts:
    """What rules can match on, read once per request."""

    alias: str
    tenant: str
    tools: bool
    tokens: int
    last_user: str
    system: str
    user: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    # ~4 characters a token, the estimate the rate limiter uses: rules must be
    # cheap, and "over 6k tokens" is a coarse cut that a tokenizer would not change
    chars = sum(len(message_text(m.get("content"))) for m in messages)
    return (chars + 3) // 4


def facts(req: ChatRequest) -> Facts:
    last_user = next((m for m in reversed(req.messages) if m.get("role") == "user"), None)
    system = "\n".join(message_text(m.get("content")) for m in req.messages if m.get("role") in ("system", "developer"))
    meta = req.body.get("metadata") if isinstance(req.body.get("metadata"), dict) else {}
    user = req.body.get("user")
    return Facts(
        alias=req.alias,
        tenant=req.caller.tenant,
        tools=bool(req.body.get("tools") or req.body.get("functions")),
        tokens=prompt_tokens(req.messages),
        last_user=message_text(last_user.get("content")) if last_user else "",
        system=system,
        user=user if isinstance(user, str) else None,
        metadata={str(k): str(v) for k, v in meta.items()},
        headers=req.headers,
    )


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def matches(rule: RuleSettings, f: Facts) -> bool:
    m = rule.match
    if m.alias is not None and f.alias not in m.alias:
        return False
    if m.tenant is not None and f.tenant not in m.tenant:
        return False
    if m.tools is not None and f.tools != m.tools:
        return False
    if m.min_tokens is not None and f.tokens < m.min_tokens:
        return False
    if m.max_tokens is not None and f.tokens > m.max_tokens:
        return False
    if m.last_user is not None and not _regex(m.last_user).search(f.last_user):
        return False
    if m.system is not None and not _regex(m.system).search(f.system):
        return False
    if m.user is not None and f.user not in m.user:
        return False
    for key, allowed in m.metadata.items():
        if f.metadata.get(key) not in allowed:
            return False
    for name, allowed in m.headers.items():
        if f.headers.get(name) not in allowed:
            return False
    return True


def ordered(rules: Sequence[RuleSettings]) -> list[RuleSettings]:
    """Precedence order: priority high to low, file order within a priority (a stable sort)."""
    return sorted(rules, key=lambda r: -r.priority)


def first_match(rules: Sequence[RuleSettings], f: Facts) -> RuleSettings | None:
    for rule in ordered(rules):
        if matches(rule, f):
            return rule
    return None
