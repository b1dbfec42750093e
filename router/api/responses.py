"""The OpenAI Responses API front end: POST /v1/responses, and GET/DELETE
/v1/responses/{id}, GET /v1/responses/{id}/input_items over the response store.

A translator around the same pipeline chat uses (routing, cache, Self-Ref,
DEER, limits, decision log and x-thinkgate-* headers apply unchanged):
responses_input turns the request into a chat request, responses_output turns
the completion or chunk stream back into a response object or typed events.
`previous_response_id` continues the chat history stored with that response
(the tenant's own only), and `item_reference` inputs are resolved from the
items stored with earlier responses (responses_refs.py); a store that does not answer fails that lookup with a
clear 503, while storing a new response only logs the failure and serving goes
on.
"""

from __future__ import annotations

import asyncio
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

from router.access.auth import caller_of
from router import errors
from router.api.responses_input import ParsedResponses, parse
from router.api.responses_output import EventStream, events, history_messages, to_response
from router.api.responses_refs import ITEM_PREFIX, item_key, resolve
from router.cache.stored_responses import ResponseStore, StoreUnavailable
from router.config import Settings
from router.pipeline.core import Pipeline

log = logging.getLogger("thinkgate.responses")


class StoreError(errors.ThinkgateError):
    status = 503
    type = "server_error"
    code = "response_store_unavailable"


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
        items = [i for i in response["output"] if isinstance(i.get("id"), str)]
        record = {
            "response": response,
            "input_items": p.input_items,
            "history": [*history, *p.messages, *history_messages(response["output"])],
            "item_ids": [i["id"] for i in items],
        }
        try:
            await self.store.put(tenant, response["id"], record)
            # each output item on its own, for the item_reference inputs of later turns
            await asyncio.gather(
                *(self.store.put(tenant, item_key(i["id"]), {"item": i, "response_id": response["id"]}) for i in items)
            )
        except StoreUnavailable as e:  # the answer still goes out; only its continuation is lost
            log.warning("response %s not stored: %s", response["id"], e)

    async def _load_response(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        if response_id.startswith(ITEM_PREFIX):  # an item's key, not a response
            return None
        rec = await self._load(tenant, response_id)
        return rec if rec is not None and "response" in rec else None

    def _body(self, raw: bytes, request: Request) -> dict[str, Any] | None:
        """The JSON body (parsed once by the middleware when it could), or None when it
        is not a JSON object: then `parse` gives the client its error."""
        state = request.scope.get("state")
        pre = state.get("parsed_body") if isinstance(state, dict) else None
        if pre is not None and pre[0] == raw:
            return pre[1] if isinstance(pre[1], dict) else None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        return data if isinstance(data, dict) else None

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        t_parse = time.perf_counter()
        caller = caller_of(request.scope)
        data = self._body(raw, request)
        hosted = "drop"
        if data is not None:
            data = await resolve(data, lambda key: self._load(caller.tenant, key))
            hosted = self.settings.responses.hosted_tools_policy(data.get("model"))
        p = parse(raw, request.headers, data, hosted_tools=hosted)
        parse_ms = (time.perf_counter() - t_parse) * 1000  # with item_reference resolution
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
            kept = json.dumps(prev.get("history") or [])
            # the merged conversation goes upstream whole: the body limit bounds it, not each turn
            if len(kept) + len(raw) > self.settings.server.max_body_bytes:
                raise errors.PayloadTooLarge(
                    f"the conversation (the history of previous_response_id plus this request) is larger than "
                    f"the limit of {self.settings.server.max_body_bytes} bytes; start a new one",
                    param="previous_response_id",
                )
            history = json.loads(kept)
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
        rec = await self._load_response(caller_of(request.scope).tenant, response_id)
        if rec is None:
            raise _not_found(response_id)
        return JSONResponse(rec["response"])

    async def delete(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        tenant = caller_of(request.scope).tenant
        rec = await self._load_response(tenant, response_id)
        try:
            found = rec is not None and await self.store.delete(tenant, response_id)
            for item_id in (rec or {}).get("item_ids") or []:
                await self.store.delete(tenant, item_key(item_id))
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
        rec = await self._load_response(caller_of(request.scope).tenant, response_id)
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
