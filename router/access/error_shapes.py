"""Which protocol's error body a path answers with. Every error leaves through the
one error tree (router.errors); only its JSON shape depends on the front end the
client speaks, and the middlewares (auth, limits, body limit) run before any route,
so the choice is made from the path alone.

Anthropic clients (`/v1/messages*`) parse `{"type": "error", "error": {"type", "message"}}`
and map its `type`; Google's Gemini clients (`/v1beta/*`, `/v1/models/{model}:method`) parse `{"error": {"code",
"message", "status"}}` and retry on its `status`; everything else gets the OpenAI shape.
"""

from __future__ import annotations

from typing import Any

from router import errors

ANTHROPIC_PREFIX = "/v1/messages"
GEMINI_PREFIX = "/v1beta"
# google.rpc.Code names by HTTP status (cloud.google.com/apis/design/errors)
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
    500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip


def is_anthropic(path: str) -> bool:
    return path == ANTHROPIC_PREFIX or path.startswith(ANTHROPIC_PREFIX + "/")


def anthropic_type(e: errors.ThinkgateError) -> str:
    """Anthropic's error types, by status (docs.anthropic.com/en/api/errors)."""
    status = e.status
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 413:
        return "request_too_large"
    if status == 429:
        return "rate_limit_error"
    if 400 <= status < 500:
        return "invalid_request_error"
    if status in (503, 529):  # the model behind the route is down or its breaker is open
        return "overloaded_error"
    return "api_error"


def anthropic_body(e: errors.ThinkgateError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_type(e), "message": e.message}}


def is_gemini(path: str) -> bool:
    """Google's paths: all of /v1beta, and /v1/models/{model}:method (google-genai >= 3
    calls the v1 API; `/v1/models` itself is OpenAI's model list)."""
    if path == GEMINI_PREFIX or path.startswith(GEMINI_PREFIX + "/"):
        return True
    return path.startswith("/v1/models/") and ":" in path


def gemini_call(path: str) -> str | None:
    """The method of a Gemini model call (`generateContent`, ...), or None."""
    if not is_gemini(path) or "/models/" not in path:
        return None
    _, sep, method = path.rpartition(":")
    return method if sep and "/" not in method else None


def google_body(e: errors.ThinkgateError) -> dict[str, Any]:
    status = _GOOGLE_STATUS.get(e.status, "INTERNAL" if e.status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": e.status, "message": e.message, "status": status}}


def body_for(path: str, e: errors.ThinkgateError) -> dict[str, Any]:
    if is_anthropic(path):
        return anthropic_body(e)
    return google_body(e) if is_gemini(path) else e.body()
