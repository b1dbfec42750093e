"""The one error every Anthropic request check raises: a 400 in Anthropic's shape
(router/api/anthropic/routes.py renders it), naming the field the client sent."""

from __future__ import annotations

from router.errors import InvalidRequest


def bad(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_request")
