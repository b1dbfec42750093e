"""Self-Ref that streams (selfref.stream: prefix:K): read the fast answer's
first K tokens, judge their confidence, and then either stream the rest as it
comes (the K tokens first) or drop the fast stream and let the caller stream
the reasoning answer instead. The client never sees a token of an answer that
is replaced, and waits for K tokens, not the whole answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from router import errors
from router.config import Settings
from router.pipeline import streaming, timings
from router.pipeline.accounting import account, charge_discarded
from router.pipeline.escalation import escalate, logprob_args, strip_chunk_logprobs
from router.pipeline.parts import Reply, _Target
from router.pipeline.recorder import Recorder
from router.pipeline.replies import assemble
from router.types import ChatRequest, Decision


def chunk_tokens(ch: dict[str, Any]) -> int:
    """Tokens in a chunk: its logprob entries, else one per chunk that carries text."""
    n = 0
    for c in ch.get("choices") or []:
        lp = c.get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list):
            n += len(lp["content"])
        elif isinstance(lp, dict) and isinstance(lp.get("tokens"), list):
            n += len(lp["tokens"])
        elif (c.get("delta") or {}).get("content") or c.get("text"):
            n += 1
    return n


async def judge(
    settings: Settings, recorder: Recorder, req: ChatRequest, d: Decision, target: _Target, embedding: Any, t0: float,
    open_stream: Callable[..., AsyncIterator[dict[str, Any]]],
) -> Reply | None:
    """The reply streaming the kept fast answer, or None when Self-Ref escalates.
    Upstream errors before the decision propagate (the caller may fall back)."""
    cfg = settings.selfref
    k = cfg.prefix_tokens or 0
    gen = open_stream(**logprob_args(cfg, req))  # the pipeline's body for this upstream, with logprobs
    t = time.perf_counter()
    head: list[dict[str, Any]] = []
    n, ended = 0, False
    try:
        while n < k:
            try:
                ch = await gen.__anext__()
            except StopAsyncIteration:
                ended = True
                break
            head.append(ch)
            n += chunk_tokens(ch)
    except BaseException:
        await streaming._aclose(gen)
        _charge(d, target, t)
        raise
    if not head:
        _charge(d, target, t)
        raise errors.UpstreamUnavailable(f"upstream {target.model_name} sent an empty stream", upstream=target.model_name)
    partial = assemble(head)
    d.selfref_tokens = n
    if escalate(cfg, req, d, partial):
        await streaming._aclose(gen)  # stop paying for an answer that will not be used
        _charge(d, target, t)
        charge_discarded(settings, d, target, partial)
        if ended:  # only a whole fast answer can be graded against the reasoning one
            recorder.hold_fast(d, partial)
        return None
    strip_chunk_logprobs(req, head)
    if ended:  # the whole answer fit in K tokens: judged whole, as in buffer mode
        _charge(d, target, t)
        account(settings, req, d, target, partial)
        return Reply(d, chunks=streaming.replay(recorder, req, d, head, embedding, partial, t0))
    # headers go out before the stream ends: name the model that answers now
    d.route, d.upstream, d.upstream_model = target.route, target.model_name, target.upstream.model
    return Reply(d, chunks=streaming.relay(settings, recorder, req, d, target, head[0], _rest(req, head[1:], gen), embedding, t0, t))


def _charge(d: Decision, target: _Target, t: float) -> None:
    """The fast call's time, when it ends here; a kept stream's is recorded by streaming.relay."""
    ms = (time.perf_counter() - t) * 1000
    d.upstream_ms += ms
    timings.upstream(d, target.model_name, ms)


async def _rest(req: ChatRequest, held: list[dict[str, Any]], gen: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """The held prefix, then the live stream, without logprobs the client did not ask for."""
    try:
        for ch in held:
            yield ch
        async for ch in gen:
            strip_chunk_logprobs(req, [ch])
            yield ch
    finally:
        await streaming._aclose(gen)
