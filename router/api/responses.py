"""The OpenAI Responses API front end: POST /v1/responses, and GET/DELETE
/v1/responses/{id}, GET /v1/responses/{id}/input_items over the response store.

A translator around the same pipeline chat uses (routing, cache, Self-Ref,
DEER, limits, decision log and x-thinkgate-* headers apply unchanged):
responses_input turns the request into a chat request, responses_output turns
the completion or chunk stream back into a response object or typed events.
`previous_response_id` continues the chat history stored with that response
(the tenant's own only); a store that does not answer fails that lookup with a
clear 503, while storing a new response only logs the failure and serving goes
on.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from router import errors
from router.api.responses_input import ParsedResponses, parse
from router.api.responses_output import EventStream, events, history_messages, to_response
from router.cache.stored_responses import ResponseStore, StoreUnavailable
from router.config import Settings
from router.pipeline.core import Pipeline
from router.types import Caller

log = logging.getLogger("thinkgate.responses")


class StoreError(errors.ThinkgateError):
    status = 503
    type = "server_error"
    code = "response_store_unavailable"


def _caller(request: Request) -> Caller:
    state = request.scope.get("state") or {}
    caller = state.get("caller") if isinstance(state, dict) else None
    return caller if isinstance(caller, Caller) else Caller()


def _not_found(response_id: str) -> errors.NotFound:
    return errors.NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="not_found")


class ResponsesAPI:
    def __init__(self, settings: Settings, pipeline: Pipeline, store: ResponseStore) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.store = store

    async def _load(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        try:
            return await self.store.get(tenant, response_id)
        except StoreUnavailable as e:
            raise StoreError(f"{e}; try again, or send the whole conversation as input") from None

    async def _save(
        self, tenant: str, response: dict[str, Any], p: ParsedResponses, history: list[dict[str, Any]]
    ) -> None:
        if not (p.store and self.settings.responses.store):
            return
        record = {
            "response": response,
            "input_items": p.input_items,
            "history": [*history, *p.messages, *history_messages(response["output"])],
        }
        try:
            await self.store.put(tenant, response["id"], record)
        except StoreUnavailable as e:  # the answer still goes out; only its continuation is lost
            log.warning("response %s not stored: %s", response["id"], e)

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        state = request.scope.get("state")
        pre = state.get("parsed_body") if isinstance(state, dict) else None
        t_parse = time.perf_counter()
        p = parse(raw, request.headers, pre[1] if pre is not None and pre[0] == raw else None)
        parse_ms = (time.perf_counter() - t_parse) * 1000
        caller = _caller(request)
        history: list[dict[str, Any]] = []
        if p.previous_response_id is not None:
            prev = await self._load(caller.tenant, p.previous_response_id)
            if prev is None:
                raise errors.NotFound(
                    f"Previous response with id '{p.previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            # a copy: the stored record is shared (in-process store), the pipeline may edit what it is given
            history = json.loads(json.dumps(prev.get("history") or []))
        req = p.chat_request(history)
        req.caller = caller
        req.api, req.parse_ms = "responses", parse_ms
        limits = self.settings.limits
        if len(req.messages) > limits.max_messages:
            raise errors.InvalidRequest(
                f"too many messages: {len(req.messages)} > {limits.max_messages}",
                param="input",
                code="too_many_messages",
            )
        if int(req.body.get("max_tokens") or 0) > limits.max_tokens:
            raise errors.InvalidRequest(
                f"max_output_tokens is over the limit of {limits.max_tokens}",
                param="max_output_tokens",
                code="invalid_value",
            )
        reply = await self.pipeline.handle(req)
        headers = reply.decision.headers()
        headers.update(reply.extra_headers)
        # after the answer is sent: the learning loop's shadow call, as on chat
        after = BackgroundTask(reply.after) if reply.after is not None else None
        response_id = f"resp_{uuid.uuid4().hex}"
        created = time.time()
        if reply.body is not None:
            body = to_response(p, reply.body, reply.decision, response_id, created)
            await self._save(caller.tenant, body, p, history)
            return JSONResponse(body, headers=headers, background=after)
        assert reply.chunks is not None
        chunks = reply.chunks
        stream = EventStream(p, reply.decision, response_id, created)

        async def save(final: dict[str, Any]) -> None:
            await self._save(caller.tenant, final, p, history)

        async def body_iter() -> AsyncIterator[bytes]:
            try:
                async for b in events(stream, chunks, save):
                    yield b
            finally:
                # the client may be gone (task cancelled): still close the upstream side
                with anyio.CancelScope(shield=True):
                    close = getattr(chunks, "aclose", None)
                    if close is not None:
                        await close()

        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return StreamingResponse(body_iter(), media_type="text/event-stream", headers=headers, background=after)

    async def retrieve(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        if request.query_params.get("stream") in ("true", "1"):
            raise errors.InvalidRequest(
                "streaming a stored response is not supported", param="stream", code="unsupported_value"
            )
        rec = await self._load(_caller(request).tenant, response_id)
        if rec is None:
            raise _not_found(response_id)
        return JSONResponse(rec["response"])

    async def delete(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        try:
            found = await self.store.delete(_caller(request).tenant, response_id)
        except StoreUnavailable as e:
            raise StoreError(str(e)) from None
        if not found:
            raise _not_found(response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})

    async def input_items(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        q = request.query_params
        try:
            limit = int(q.get("limit") or 20)
        except ValueError:
            raise errors.InvalidRequest("'limit' must be an integer", param="limit", code="invalid_type") from None
        if not 1 <= limit <= 100:
            raise errors.InvalidRequest("'limit' must be between 1 and 100", param="limit", code="invalid_value")
        order = q.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise errors.InvalidRequest("'order' must be asc or desc", param="order", code="invalid_value")
        rec = await self._load(_caller(request).tenant, response_id)
        if rec is None:
            raise _not_found(response_id)
        items = list(rec.get("input_items") or [])
        if order == "desc":
            items.reverse()
        after = q.get("after")
        if after:
            ids = [i.get("id") for i in items]
            if after not in ids:
                raise errors.InvalidRequest(
                    f"'after': no input item with id '{after}'", param="after", code="invalid_value"
                )
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            }
        )


def routes(settings: Settings, pipeline: Pipeline, store: ResponseStore) -> list[Route]:
    api = ResponsesAPI(settings, pipeline, store)
    return [
        Route("/v1/responses", api.create, methods=["POST"]),
        Route("/v1/responses/{response_id}", api.retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", api.delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", api.input_items, methods=["GET"]),
    ]
