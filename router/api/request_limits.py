"""The request-size limits every front end applies to the parsed request
(`limits.max_messages`, `limits.max_tokens`), before the pipeline runs."""

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
    if max_tokens(req, 0) > limits.max_tokens:
        raise errors.InvalidRequest(
            f"max_tokens is over the limit of {limits.max_tokens}", param="max_tokens", code="invalid_value"
        )
