"""The Gemini API's HTTP surface: `POST /v1beta/models/{model}:generateContent`,
`:streamGenerateContent` (SSE with `alt=sse`, else one growing JSON array, as Google
sends), `:countTokens` (each also under /v1, google-genai 3's default version),
`GET /v1beta/models` and `GET /v1beta/models/{model}`.

The pipeline runs as for chat (routing, cache, Self-Ref, DEER, limits, decision log,
x-thinkgate-* headers). Fields accepted but not sent upstream are named in the
decision record (`dropped`) and in the `x-thinkgate-dropped` header.
"""

from __future__ import annotations

import dataclasses
import json
import math
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
from router.api.gemini import reply as gemini_reply
from router.api.gemini.request import bad, camel, messages_of, tools_of, translate
from router.api.protocol import parse_request
from router.config import Settings
from router.pipeline.core import Pipeline
from router.types import Caller

_METHODS = ("generateContent", "streamGenerateContent", "countTokens")  # what /v1beta/models lists


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    state = request.scope.get("state")
    pre = state.get("parsed_body") if isinstance(state, dict) else None
    if pre is not None and pre[0] == raw:
        return pre[1]  # decoded once already by the limit middleware
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad("Invalid JSON payload received.") from None


def _known(settings: Settings, alias: str) -> bool:
    return alias in settings.routes or alias in settings.models or any(m.model == alias for m in settings.models.values())


class GeminiAPI:
    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline

    async def generate_content(self, request: Request) -> Response:
        return await self._generate(request, stream=False)

    async def stream_generate_content(self, request: Request) -> Response:
        return await self._generate(request, stream=True)

    async def _generate(self, request: Request, *, stream: bool) -> Response:
        model = request.path_params["model"]
        data = await _json_body(request)
        with tracing.span("thinkgate.parse", {"thinkgate.endpoint": "gemini"}):
            t = translate(data, model)
            if stream:
                t.body["stream"] = True
            req = parse_request("chat", b"", request.headers, t.body)
        req.caller = caller_of(request.scope)
        req.include_usage = True  # the stream's usage chunk fills the last usageMetadata
        req.dropped = t.dropped
        if t.budget_tokens is not None:
            deer = dataclasses.replace(req.controls.deer, budget_tokens=t.budget_tokens)
            req.controls = dataclasses.replace(req.controls, deer=deer)
        try:
            request_limits.check(req, self.settings.limits)
        except errors.InvalidRequest as e:  # said with the fields the client sent
            names = {"max_tokens": "generationConfig.maxOutputTokens", "n": "generationConfig.candidateCount"}
            if e.param in names:
                raise bad(e.message.replace(f"'{e.param}'", e.param).replace(e.param, names[e.param], 1), names[e.param]) from None
            raise
        reply = await self.pipeline.handle(req)
        headers = reply.decision.headers()
        headers.update(reply.extra_headers)
        if t.dropped:
            # names the client chose (tool keys) stay printable ASCII in a header
            headers["x-thinkgate-dropped"] = "".join(c if " " <= c <= "~" else "?" for c in ",".join(t.dropped))[:1000]
        after = BackgroundTask(reply.after) if reply.after is not None else None
        if reply.body is not None:
            body = gemini_reply.to_response(reply.body, model=model, include_thoughts=t.include_thoughts)
            return JSONResponse(body, headers=headers, background=after)
        assert reply.chunks is not None
        chunks = reply.chunks
        objects = gemini_reply.responses(chunks, model=model, include_thoughts=t.include_thoughts)
        if request.query_params.get("alt") == "sse":
            headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
            body_iter, media = gemini_reply.sse(objects), "text/event-stream"
        else:
            body_iter, media = gemini_reply.json_array(objects), "application/json"
        return StreamingResponse(_closing(body_iter, chunks), media_type=media, headers=headers, background=after)

    async def count_tokens(self, request: Request) -> Response:
        """The project's estimator (router.access.limits.estimate_tokens, ~4 characters a
        token, what the rate limits count), not a tokenizer: the same whichever route
        a later request takes."""
        model = request.path_params["model"]
        data = await _json_body(request)
        if not isinstance(data, dict):
            raise bad("the request body must be a JSON object")
        d = camel(data)
        inner = d.get("generateContentRequest")
        if inner is not None:
            if not isinstance(inner, dict):
                raise bad("generateContentRequest: must be an object", "generateContentRequest")
            d = camel(inner)
        if not _known(self.settings, model):
            raise errors.ModelNotFound(f"models/{model} is not found", param="model")
        check_alias(caller_of(request.scope), model)
        n = estimate_tokens(messages_of(d))
        if d.get("tools") is not None:
            n += math.ceil(len(json.dumps(tools_of(d["tools"], []))) / 4)
        return JSONResponse({"totalTokens": n})

    def _model(self, name: str) -> dict[str, Any]:
        return {
            "name": f"models/{name}",
            "version": "thinkgate",
            "displayName": name,
            "description": "a thinkgate route or model",
            "outputTokenLimit": self.settings.limits.max_tokens,
            "supportedGenerationMethods": list(_METHODS),
        }

    def _names(self, caller: Caller) -> list[str]:
        seen: dict[str, None] = {}
        for alias in self.settings.routes:
            seen[alias] = None
        for name, ms in self.settings.models.items():
            seen[name] = None
            if ms.model:
                seen[ms.model] = None
        return [n for n in seen if caller.aliases is None or n in caller.aliases]

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"models": [self._model(n) for n in self._names(caller_of(request.scope))]})

    async def unknown_method(self, request: Request) -> Response:
        target = request.path_params["model"]
        raise errors.NotFound(
            f"models/{target}: not a method thinkgate serves (it serves {', '.join(_METHODS)})", code="not_found"
        )

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["model"]
        if name not in self._names(caller_of(request.scope)):
            raise errors.ModelNotFound(f"models/{name} is not found", param="model")
        return JSONResponse(self._model(name))


async def _closing(body: AsyncIterator[bytes], chunks: Any) -> AsyncIterator[bytes]:
    try:
        async for b in body:
            yield b
    finally:
        # the client may be gone (task cancelled): still close the upstream side
        with anyio.CancelScope(shield=True):
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()


def routes(settings: Settings, pipeline: Pipeline) -> list[Route]:
    api = GeminiAPI(settings, pipeline)
    # "{model}:method" is one path segment; Starlette's {model} stops at "/" and backtracks to the ":".
    # Served under v1beta (Gemini CLI, @ai-sdk/google) and v1 (google-genai >= 3's default); GET
    # /v1/models and /v1/models/{id} stay OpenAI's.
    calls = [
        Route(f"{prefix}/models/{{model}}:{method}", handler, methods=["POST"])
        for prefix in ("/v1beta", "/v1")
        for method, handler in (
            ("generateContent", api.generate_content),
            ("streamGenerateContent", api.stream_generate_content),
            ("countTokens", api.count_tokens),
        )
    ]
    return [
        Route("/v1beta/models", api.list_models, methods=["GET"]),
        Route("/v1beta/models/{model}", api.get_model, methods=["GET"]),
        *calls,
        Route("/v1beta/models/{model}", api.unknown_method, methods=["POST"]),
    ]
