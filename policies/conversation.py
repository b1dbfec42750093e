"""Conversation-aware routing, pure: which conversation a request belongs to,
and how its earlier route bends this turn's.

  independent  every turn on its own (the classifier decides)
  sticky       the first route holds unless the classifier is very sure the
               other way: P at least `margin` past the threshold
  monotone     a conversation may move fast -> reasoning, never back
"""

from __future__ import annotations

import hashlib
from typing import Literal

from policies.features import message_text
from router.types import ChatRequest, Route

Mode = Literal["independent", "sticky", "monotone"]


def conversation_id(req: ChatRequest) -> tuple[str, str]:
    """(id, source). What the client sends wins; `user` names a person rather
    than one conversation, so it comes after the conversation-specific keys;
    failing all, a fingerprint of the system prompt and first user turn (what
    every later turn of a chat resends). Scoped by tenant and hashed, so ids
    from different tenants never meet and a raw `user` never reaches Redis."""
    meta = req.body.get("metadata")
    candidates = (
        ("header", req.headers.get("x-thinkgate-session")),
        ("metadata", meta.get("session_id") if isinstance(meta, dict) else None),
        ("prompt_cache_key", req.body.get("prompt_cache_key")),
        ("user", req.body.get("user")),
    )
    for source, value in candidates:
        if isinstance(value, str) and value:
            return _hash(req.caller.tenant, source, value), source
    system = "\n".join(message_text(m.get("content")) for m in req.messages if m.get("role") in ("system", "developer"))
    first = next((message_text(m.get("content")) for m in req.messages if m.get("role") == "user"), "")
    return _hash(req.caller.tenant, "fingerprint", system + "\x00" + first), "fingerprint"


def _hash(tenant: str, source: str, value: str) -> str:
    return hashlib.sha256(f"{tenant}\x00{source}\x00{value}".encode()).hexdigest()[:24]


def decide(
    mode: Mode, prior: Route | None, route: Route, p: float | None, threshold: float | None, margin: float
) -> tuple[Route, bool]:
    """(route for this turn, whether the conversation's earlier route decided it).

    `route` is what this turn alone would get; `p`/`threshold` are the
    classifier's, when it ran (without them `sticky` cannot tell "very sure",
    so the earlier route holds)."""
    if mode == "independent" or prior is None or prior == route:
        return route, False
    if mode == "monotone":
        if prior == "reasoning":  # route is "fast" here: never move back
            return "reasoning", True
        return route, False
    # sticky: move only when the classifier is far past its cut the other way
    if p is not None and threshold is not None:
        if route == "reasoning" and p >= threshold + margin:
            return route, False
        if route == "fast" and p <= threshold - margin:
            return route, False
    return prior, True


def remembered(mode: Mode, prior: Route | None, final: Route) -> Route:
    """The route to store after the turn: under `monotone` an escalated turn
    lifts the conversation to reasoning, and nothing lowers it."""
    if mode == "monotone" and prior == "reasoning":
        return "reasoning"
    return final  # sticky: a confident move (or an escalation) re-anchors the conversation
