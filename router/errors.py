"""One error tree. Every boundary (parsing, upstreams, cache, auth) maps its
failures onto these, and the app turns any of them into an OpenAI-shaped body."""

from __future__ import annotations

from typing import Any


class ThinkgateError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# -- client errors -------------------------------------------------------------


class InvalidRequest(ThinkgateError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(ThinkgateError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(ThinkgateError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(ThinkgateError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(ThinkgateError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(ThinkgateError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class EmbeddingFailed(ThinkgateError):
    """The shared embedder could not embed this request's text (the batcher retries a
    failed batch text by text, so only the text that fails alone gets this)."""

    code = "embedding_failed"


# -- upstream errors (mapped at the upstream boundary) -------------------------


class UpstreamError(ThinkgateError):
    """The model behind a route failed. `upstream` names the configured model."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True

    def __init__(self, message: str, *, upstream: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.upstream = upstream


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    """Connection refused/reset, 5xx, or the circuit breaker is open."""

    status = 503
    code = "upstream_unavailable"


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamRejected(UpstreamError):
    """The upstream refused the request itself (4xx): retrying will not help."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected"
    retryable = False


class UpstreamAuth(UpstreamError):
    """The provider refused our credentials. The message never includes them."""

    status = 502
    code = "upstream_auth"
    retryable = False


def from_status(status: int, message: str, *, upstream: str | None = None) -> UpstreamError:
    """Map an upstream HTTP status to the error tree. The upstream's own message goes to
    the server log only: an upstream may echo what it was sent (its auth header, the
    provider key), and the client's error and the decision record must never carry it."""
    import logging

    logging.getLogger("thinkgate.upstreams").warning("upstream %s answered HTTP %s: %s", upstream, status, message[:2000])
    message = f"upstream {upstream} answered HTTP {status}; the gateway logged the details"
    if status in (401, 403):
        return UpstreamAuth(f"upstream {upstream} refused the credentials", upstream=upstream)
    if status == 429:
        return UpstreamRateLimited(message, upstream=upstream)
    if status in (408, 504):
        return UpstreamTimeout(message, upstream=upstream)
    if 400 <= status < 500:
        return UpstreamRejected(message, upstream=upstream, status=status if status != 404 else 400)
    return UpstreamUnavailable(message, upstream=upstream)
