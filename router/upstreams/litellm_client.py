"""Any provider litellm knows (OpenAI, Anthropic, Ollama, `hosted_vllm/...`),
used as a library behind thinkgate's own interface. litellm is imported on
first use (its import costs seconds) and its exceptions never leave this module."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from router import errors, tracing
from router.upstreams.base import CallContext
from router.upstreams.hygiene import normalize_chunk, normalize_reply

log = logging.getLogger("thinkgate.upstreams")

_litellm: Any = None


def _lib() -> Any:
    global _litellm  # a lazily imported module, not state of ours
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.drop_params = True  # providers reject params they don't know; drop, don't fail
        _litellm = litellm
    return _litellm


def _map(exc: Exception, upstream: str) -> errors.UpstreamError:
    lib = _lib()
    ex = lib.exceptions
    if isinstance(exc, ex.Timeout):
        return errors.UpstreamTimeout(f"upstream {upstream} timed out", upstream=upstream)
    if isinstance(exc, ex.AuthenticationError):
        return errors.UpstreamAuth(f"upstream {upstream} refused the credentials", upstream=upstream)
    if isinstance(exc, ex.RateLimitError):
        return errors.UpstreamRateLimited(f"upstream {upstream} is rate limited", upstream=upstream)
    if isinstance(exc, (ex.BadRequestError, ex.NotFoundError, ex.UnprocessableEntityError)):
        msg = str(getattr(exc, "message", "") or exc)[:2000]
        # the provider's words go to the log only: they may echo the request's credentials
        log.warning("upstream %s rejected the request: %s", upstream, msg)
        return errors.UpstreamRejected(f"upstream {upstream} rejected the request; the gateway logged the details", upstream=upstream)
    if isinstance(exc, ex.ContextWindowExceededError):
        return errors.UpstreamRejected(f"upstream {upstream}: context window exceeded", upstream=upstream)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return errors.from_status(status, f"upstream {upstream} failed (HTTP {status})", upstream=upstream)
    return errors.UpstreamUnavailable(f"upstream {upstream} failed ({type(exc).__name__})", upstream=upstream)


def _dump(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    return obj.model_dump(exclude_none=False) if hasattr(obj, "model_dump") else dict(obj)


class LiteLLMUpstream:
    def __init__(
        self,
        name: str,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._kw: dict[str, Any] = dict(extra or {})
        if api_base:
            self._kw["api_base"] = api_base
        if api_key:
            self._kw["api_key"] = api_key
        self.timeout = timeout

    def _args(self, body: dict[str, Any], ctx: CallContext, stream: bool) -> dict[str, Any]:
        args = {**body, **self._kw, "model": self.model, "stream": stream, "timeout": ctx.timeout or self.timeout}
        args.pop("stream_options", None)
        trace_headers = tracing.headers()  # continue the request's trace at the provider
        if trace_headers:
            args["extra_headers"] = {**(args.get("extra_headers") or {}), **trace_headers}
        if stream and "messages" in body:
            args["stream_options"] = {"include_usage": True}
        return args

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        lib = _lib()
        fn = lib.acompletion if "messages" in body else lib.atext_completion
        try:
            resp = await fn(**self._args(body, ctx, stream=False))
        except Exception as e:  # the seam: every litellm failure becomes one of ours
            raise _map(e, self.name) from None
        return normalize_reply(_dump(resp))

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        lib = _lib()
        fn = lib.acompletion if "messages" in body else lib.atext_completion
        try:
            resp = await fn(**self._args(body, ctx, stream=True))
            async for chunk in resp:
                yield normalize_chunk(_dump(chunk))
        except errors.ThinkgateError:
            raise
        except Exception as e:  # the seam, as above
            raise _map(e, self.name) from None

    async def ready(self) -> dict[str, Any]:
        # Providers have no free health endpoint; configuration is what we can check.
        return {"ok": True, "kind": "litellm", "model": self.model}

    async def close(self) -> None:
        return None
