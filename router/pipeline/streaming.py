"""Streaming a reply to the client: relay a live upstream stream chunk by
chunk, or replay one that was buffered (a Self-Ref answer judged before it
was sent). Either way usage goes out once, in a final chunk of its own; only a
stream that ran to its end is stored; and the decision is recorded when the
stream stops, also when the client leaves early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from router import errors
from router.config import Settings
from router.pipeline import timings
from router.pipeline.accounting import account
from router.pipeline.parts import _Target
from router.pipeline.recorder import Recorder
from router.pipeline.replies import assemble
from router.types import ChatRequest, Decision

log = logging.getLogger("thinkgate.pipeline")


async def replay(
    recorder: Recorder, req: ChatRequest, d: Decision, chunks: list[dict[str, Any]], embedding: Any, completion: dict[str, Any], t0: float
) -> AsyncIterator[dict[str, Any]]:
    roled: set[int] = set()
    try:
        for ch in chunks:
            out = client_chunk(req, ch, roled)
            if out is not None:
                yield out
        tail = usage_chunk(req, d, chunks[0] if chunks else {})
        if tail is not None:
            yield tail
        recorder.store(req, embedding, completion, chunks, d)
    finally:
        recorder.finish(d, t0)


async def relay(
    settings: Settings,
    recorder: Recorder,
    req: ChatRequest,
    d: Decision,
    target: _Target,
    first: dict[str, Any],
    gen: AsyncIterator[dict[str, Any]],
    embedding: Any,
    t0: float,
    t_up: float,
) -> AsyncIterator[dict[str, Any]]:
    seen: list[dict[str, Any]] = [first]
    complete = False
    roled: set[int] = set()
    try:
        out = client_chunk(req, first, roled)
        if out is not None:
            yield out
        async for ch in gen:
            seen.append(ch)
            out = client_chunk(req, ch, roled)
            if out is not None:
                yield out
        complete = True
        completion = assemble(seen)
        account(settings, req, d, target, completion)
        tail = usage_chunk(req, d, first)
        if tail is not None:
            yield tail
        # only a stream that ran to its end is stored
        recorder.store(req, embedding, completion, seen, d)
    except errors.ThinkgateError as e:
        d.status, d.error = e.status, f"{type(e).__name__}: {e.message}"[:300]
        yield {"error": e.body()["error"]}
    finally:
        if not complete:
            await _aclose(gen)
            if d.error is None:
                d.error, d.status = "client disconnected", 499
        # this call's time from its start (t_up), added to a discarded fast call's if any
        ms = (time.perf_counter() - t_up) * 1000
        d.upstream_ms += ms
        timings.upstream(d, target.model_name, ms, d.deer)
        recorder.finish(d, t0)


def client_chunk(req: ChatRequest, ch: dict[str, Any], roled: set[int] | None = None) -> dict[str, Any] | None:
    # usage goes out once, in its own final chunk, and only when asked for
    if "usage" in ch:
        ch = {k: v for k, v in ch.items() if k != "usage"}
        if not ch.get("choices"):
            return None
    if roled is not None and req.endpoint == "chat":
        ch = with_role(ch, roled)
    return ch


def with_role(ch: dict[str, Any], roled: set[int]) -> dict[str, Any]:
    """Each choice's first delta says `role: assistant`, as OpenAI's do: some upstreams
    (llama.cpp forks, proxies) omit it, and the Node SDK's finalChatCompletion() then
    throws "missing role for choice 0". `roled`: the choice indexes already sent."""
    choices = ch.get("choices")
    if not choices:
        return ch
    fixed = None
    for i, c in enumerate(choices):
        idx = c.get("index", 0)
        if idx in roled:
            continue
        roled.add(idx)
        delta = c.get("delta")
        if isinstance(delta, dict) and not delta.get("role"):
            if fixed is None:
                fixed = list(choices)
            fixed[i] = {**c, "delta": {"role": "assistant", **delta}}
    return ch if fixed is None else {**ch, "choices": fixed}


def usage_chunk(req: ChatRequest, d: Decision, first: dict[str, Any]) -> dict[str, Any] | None:
    if not req.include_usage and not req.controls.debug:
        return None
    obj = "chat.completion.chunk" if req.endpoint == "chat" else "text_completion"
    chunk: dict[str, Any] = {"id": first.get("id"), "object": obj, "created": first.get("created"), "model": first.get("model"), "choices": []}
    if req.include_usage:
        chunk["usage"] = {
            "prompt_tokens": d.prompt_tokens,
            "completion_tokens": d.completion_tokens,
            "total_tokens": d.prompt_tokens + d.completion_tokens,
        }
    if req.controls.debug:
        chunk["thinkgate"] = d.to_dict()
    return chunk


async def _aclose(gen: AsyncIterator[Any]) -> None:
    close = getattr(gen, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # the stream is being abandoned; its error no longer matters
            log.debug("error while closing an upstream stream", exc_info=True)
