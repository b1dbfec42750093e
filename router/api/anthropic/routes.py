"""Anthropic Messages front end: `POST /v1/messages` and `/v1/messages/count_tokens`.

A translator only: the body becomes the pipeline's ChatRequest
(router.api.anthropic.request), the pipeline runs as for chat (routing, cache,
Self-Ref, DEER, limits, decision log, x-thinkgate-* headers), and its reply goes
back as an Anthropic message or event stream (router.api.anthropic.reply).
Errors take Anthropic's shape by path (router.access.error_shapes), including
those from the auth, limit and body-size middlewares.

`anthropic-version` is accepted whatever its value and `anthropic-beta` is accepted and
recorded (the decision's `dropped`): the translation is the same for every version this
speaks (2023-06-01), and the betas' request fields are handled field by field
(router.api.anthropic.request). Claude Code's `?beta=true` query is ignored likewise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from router.access.auth import caller_of
from router import errors, tracing
from router.access.auth import check_alias
from router.access.limits import estimate_tokens
from router.api import request_limits
from router.api.anthropic import reply as anthropic_reply
from router.api.anthropic.request import _IGNORED, check_model, messages_of, translate
from router.api.anthropic.tools import tools_of
from router.api.protocol import parse_request
from router.config import Settings
from router.pipeline.core import Pipeline
from router.settings import aliases

_COUNT_FIELDS = {
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "thinkgate",
    "context_management",
    *_IGNORED,
}


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    state = request.scope.get("state")
    pre = state.get("parsed_body") if isinstance(state, dict) else None
    if pre is not None and pre[0] == raw:
        return pre[1]  # decoded once already by the limit middleware
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.InvalidRequest("the request body is not valid JSON", code="invalid_json") from None


def known_model(settings: Settings, alias: str) -> bool:
    return (
        alias in settings.routes
        or alias in settings.models
        or any(ms.model == alias for ms in settings.models.values())
        or aliases.match(settings.routes, alias) is not None
    )


class Messages:
    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline

    async def create(self, request: Request) -> Response:
        data = await _json_body(request)
        t_parse = time.perf_counter()
        with tracing.span("thinkgate.parse", {"thinkgate.endpoint": "messages"}):
            t = translate(data)
            req = parse_request("chat", b"", request.headers, t.body)
        req.api, req.parse_ms = "messages", (time.perf_counter() - t_parse) * 1000
        req.caller = caller_of(request.scope)
        req.dropped = list(t.dropped)
        if request.headers.get("anthropic-beta"):
            req.dropped.append(f"anthropic-beta: {request.headers['anthropic-beta']}"[:300])
        req.include_usage = True  # the stream's usage chunk fills message_delta.usage
        if t.budget_tokens is not None:
            deer = dataclasses.replace(req.controls.deer, budget_tokens=t.budget_tokens)
            req.controls = dataclasses.replace(req.controls, deer=deer)
        request_limits.check(req, self.settings.limits)
        reply = await self.pipeline.handle(req)
        headers = reply.decision.headers()
        headers.update(reply.extra_headers)
        # runs once the response is sent, as on chat (learning's shadow job)
        after = BackgroundTask(reply.after) if reply.after is not None else None
        if reply.body is not None:
            body = anthropic_reply.to_message(
                reply.body, model=req.alias, thinking=t.thinking, stop_sequences=t.stop_sequences, omit=t.omit_thinking
            )
            return JSONResponse(body, headers=headers, background=after)
        assert reply.chunks is not None
        chunks = reply.chunks
        events = anthropic_reply.to_events(
            chunks, model=req.alias, thinking=t.thinking, stop_sequences=t.stop_sequences,
            input_estimate=estimate_tokens(req.messages), omit=t.omit_thinking,
        )  # fmt: skip
        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return StreamingResponse(
            _closing(events, chunks), media_type="text/event-stream", headers=headers, background=after
        )

    async def count_tokens(self, request: Request) -> Response:
        """The project's estimator (router.access.limits.estimate_tokens, ~4 characters a
        token, what the rate limits count), not the upstream's tokenizer: the answer is
        the same whichever route a later request takes."""
        data = await _json_body(request)
        if not isinstance(data, dict):
            raise errors.InvalidRequest("the request body must be a JSON object", code="invalid_json")
        for name in data:
            if name not in _COUNT_FIELDS:
                raise errors.InvalidRequest(f"{name}: Extra inputs are not permitted", param=name)
        alias = check_model(data)
        if not known_model(self.settings, alias):
            raise errors.ModelNotFound(f"model: {alias}", param="model")
        caller = caller_of(request.scope)
        # as the pipeline checks it: a key allowed a pattern (`claude-*`) may use what it serves
        if caller.aliases is None or aliases.route_key(self.settings.routes, self.settings.models, alias) not in caller.aliases:
            check_alias(caller, alias)
        n = estimate_tokens(messages_of(data))
        if data.get("tools") is not None:
            n += math.ceil(len(json.dumps(tools_of(data["tools"]))) / 4)
        return JSONResponse({"input_tokens": n})


async def _closing(events: AsyncIterator[bytes], chunks: Any) -> AsyncIterator[bytes]:
    try:
        async for b in events:
            yield b
    finally:
        # the client may be gone (task cancelled): still close the upstream side
        with anyio.CancelScope(shield=True):
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()


def routes(settings: Settings, pipeline: Pipeline) -> list[Route]:
    m = Messages(settings, pipeline)
    return [
        Route("/v1/messages", m.create, methods=["POST"]),
        Route("/v1/messages/count_tokens", m.count_tokens, methods=["POST"]),
    ]
