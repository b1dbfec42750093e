"""The request-size limits every front end applies to the parsed request
(`limits.max_messages`, `limits.max_tokens`), before the pipeline runs. A max_tokens
over the limit is clamped to it (recorded, `x-thinkgate-clamped`) unless
`limits.over_max_tokens: refuse`."""

from __future__ import annotations

from router import errors
from router.api.protocol import max_tokens
from router.config import LimitSettings
from router.types import ChatRequest


def check(req: ChatRequest, limits: LimitSettings) -> None:
    if len(req.messages) > limits.max_messages:
        raise errors.InvalidRequest(
            f"too many messages: {len(req.messages)} > {limits.max_messages}",
            param="messages",
            code="too_many_messages",
        )
    if int(req.body.get("n") or 1) > limits.max_n:  # each choice is an upstream call (router/pipeline/fanout.py)
        raise errors.InvalidRequest(f"'n' is over the limit of {limits.max_n}", param="n", code="invalid_value")
    asked = max_tokens(req, 0)
    if asked > limits.max_tokens:
        if limits.over_max_tokens == "refuse":
            raise errors.InvalidRequest(
                f"max_tokens is over the limit of {limits.max_tokens}", param="max_tokens", code="invalid_value"
            )
        # clamp (the default): agents ask for their vendor's maximum whatever the model
        for f in ("max_completion_tokens", "max_tokens"):
            if f in req.body and req.body[f] is not None:
                req.body[f] = limits.max_tokens
        req.clamped = f"max_tokens {asked} -> {limits.max_tokens} (limits.max_tokens)"
