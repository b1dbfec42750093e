"""`n > 1`: n choices from upstreams that return one.

Most upstreams behind thinkgate answer one choice per call (llama.cpp, DEER's
raw-prompt driver, many litellm providers), so n choices are n concurrent calls
whose choices are re-indexed 0..n-1 and whose usage is summed; streams are merged
as their chunks arrive, each chunk carrying its choice's index. A model configured
with `native_n: true` (OpenAI, vLLM) gets `n` passed through instead: one call.
One call failing fails the request (its error, the others cancelled), as an
upstream that honours `n` would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from router.types import DeerStats
from router.upstreams.base import CallContext, Upstream


def n_of(body: dict[str, Any]) -> int:
    return int(body.get("n") or 1)


def _one(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "n"}


def _contexts(ctx: CallContext, n: int) -> list[CallContext]:
    # each call fills its own DEER stats; the request reports the first choice's
    return [ctx] + [dataclasses.replace(ctx, deer=DeerStats() if ctx.deer is not None else None, extra={}) for _ in range(n - 1)]


def merge(replies: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(replies[0])
    choices: list[dict[str, Any]] = []
    usage: dict[str, int] = {}
    for r in replies:
        for c in r.get("choices") or []:
            choices.append({**c, "index": len(choices)})
        for k, v in (r.get("usage") or {}).items():
            if isinstance(v, int) and not isinstance(v, bool):
                usage[k] = usage.get(k, 0) + v
    out["choices"] = choices
    if usage:
        out["usage"] = usage
    return out


async def _first_error(tasks: list[asyncio.Task[Any]]) -> list[Any]:
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def complete(upstream: Upstream, body: dict[str, Any], ctx: CallContext, *, native: bool = False) -> dict[str, Any]:
    n = n_of(body)
    if n <= 1 or native:
        return await upstream.complete(body, ctx)
    one = _one(body)
    tasks = [asyncio.ensure_future(upstream.complete(one, c)) for c in _contexts(ctx, n)]
    return merge(await _first_error(tasks))


def stream(upstream: Upstream, body: dict[str, Any], ctx: CallContext, *, native: bool = False) -> AsyncIterator[dict[str, Any]]:
    n = n_of(body)
    if n <= 1 or native:
        return upstream.stream(body, ctx)
    return _merged(upstream, _one(body), _contexts(ctx, n))


async def _merged(upstream: Upstream, body: dict[str, Any], contexts: list[CallContext]) -> AsyncIterator[dict[str, Any]]:
    """Chunks of n streams as they come, choice i's re-indexed to i; their usage
    summed into one final chunk (each stream reports its own)."""
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=64)
    done = object()

    async def pump(i: int, ctx: CallContext) -> None:
        try:
            async for ch in upstream.stream(body, ctx):
                await queue.put((i, ch))
        except Exception as e:  # handed to the consumer, which raises it
            await queue.put((i, e))
            return
        await queue.put((i, done))

    tasks = [asyncio.ensure_future(pump(i, c)) for i, c in enumerate(contexts)]
    usage: dict[str, int] = {}
    last: dict[str, Any] = {}
    open_ = len(tasks)
    try:
        while open_:
            i, item = await queue.get()
            if item is done:
                open_ -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            last = item
            for k, v in (item.get("usage") or {}).items():
                if isinstance(v, int) and not isinstance(v, bool):
                    usage[k] = usage.get(k, 0) + v
            choices = item.get("choices") or []
            if not choices:
                continue
            yield {**{k: v for k, v in item.items() if k != "usage"}, "choices": [{**c, "index": i} for c in choices]}
        if usage:
            yield {**{k: v for k, v in last.items() if k not in ("choices", "usage")}, "choices": [], "usage": usage}
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
