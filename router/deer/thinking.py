"""DEER's thinking phase: stream the reasoning model's thinking, spot
transitions ("Wait") in it, probe a trial answer at each, and stop once a
verdict says exit (see `router.deer.upstream` for the whole request). Two loops, one per
`probe_mode`: concurrent (the probe runs beside the open thinking stream, vLLM)
and sequential (the stream is closed for the probe, then resumed; servers that
serve one request at a time). Both yield the thinking text the client may see
and leave the kept thinking and the exit reason in the `Run`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from policies.deer import Exit, check_limits, may_probe
from router import errors
from router.deer.calls import DeerCalls
from router.deer.run import Run, exit_thinking, record_verdict
from router.upstreams.completions import Piece

log = logging.getLogger("thinkgate.deer")


def find_transition(text: str, start: int, transitions: list[str]) -> tuple[int, str] | None:
    """Earliest transition at or after `start`; a word ("Wait") must begin a word,
    a separator ("\n\n", for small models that never say "Wait") may be anywhere."""
    best: tuple[int, str] | None = None
    for t in transitions:
        i = text.find(t, start)
        while i != -1 and i > 0 and t[:1].isalnum() and text[i - 1].isalnum():
            i = text.find(t, i + 1)
        if i > 0 and (best is None or i < best[0]):  # i == 0: no thinking yet, nothing to probe
            best = (i, t)
    return best


# -- thinking: concurrent ----------------------------------------------------------


async def think_concurrent(calls: DeerCalls, run: Run) -> AsyncIterator[str]:
    s = calls.settings
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    payload = calls.payload(run, run.prompt, run.state.thinking_budget, [calls.close_tag])
    if s.template == "server":
        # vLLM: usage on every event. Counting events undercounts (vLLM sends no
        # event for tokens it holds back while matching a stop string), and the
        # final usage event arrives after the finish event this loop stops at.
        payload["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}

    async def read() -> None:
        try:
            async for piece in calls.api.stream(payload, calls.timeout):
                queue.put_nowait(("piece", piece))
        except errors.UpstreamError as e:
            queue.put_nowait(("error", e))
            return
        queue.put_nowait(("end", None))

    async def probe(prefix: str, step: int, at: float, pos: int, word: str) -> None:
        result = await calls.probe(run, prefix, step, at)
        queue.put_nowait(("probe", (pos, word, step, result)))

    reader = asyncio.create_task(read())
    prober: asyncio.Task[None] | None = None
    probing = run.probing
    text = ""
    released = 0
    scan = 0
    held_at: int | None = None  # transition position being probed
    hold = max((len(t) for t in s.transitions), default=1) - 1
    usage_tokens: int | None = None
    ended = False
    marks = run.marks
    detected_at = time.perf_counter()
    try:
        while True:
            try:
                kind, item = await asyncio.wait_for(queue.get(), max(0.0, run.deadline - loop.time()))
            except TimeoutError:
                exit_thinking(run, "wall_clock", None, text if held_at is None else text[:held_at])
                break
            if kind == "error":
                if not text:
                    raise item
                log.warning("deer thinking stream failed after %d chars: %s", len(text), item)
                exit_thinking(run, "error", None, text if held_at is None else text[:held_at])
                break
            if kind == "piece":
                text += item.text
                run.state.thinking_tokens += item.tokens
                if item.usage and isinstance(item.usage.get("completion_tokens"), int):
                    usage_tokens = item.usage["completion_tokens"]
                    run.state.thinking_tokens = usage_tokens  # the server's count wins
                marks.add(len(text), run.state.thinking_tokens)
                if item.finish_reason:
                    ended = True
                    run.finish_reason = item.finish_reason
                detected_at = item.at
            elif kind == "end":
                ended = True
            elif kind == "probe":
                pos, word, step, (probe_result, n, trace) = item
                prober, held_at = None, None
                verdict = record_verdict(run, probe_result, n, trace, marks.before(pos))
                if isinstance(verdict, Exit):
                    exit_thinking(run, verdict.reason, step, text[:pos])
                    break
                probing = verdict.probe_more
                scan = pos + len(word)
                detected_at = time.perf_counter()
            if ended:
                # thinking finished (or hit its budget) on its own: keep all of it
                if usage_tokens is not None:
                    run.state.thinking_tokens = usage_tokens
                reason = "budget" if run.finish_reason == "length" else "natural_end"
                exit_thinking(run, reason, None, text)
                break
            if prober is None and probing and may_probe(run.state, run.cfg):
                found = find_transition(text, scan, s.transitions)
                if found is not None:
                    pos, word = found
                    run.state.probes += 1
                    run.stats.probes = run.state.probes
                    held_at = pos
                    prober = asyncio.create_task(probe(text[:pos], run.state.probes, detected_at, pos, word))
            upto = len(text) - hold if held_at is None else held_at
            if upto > released:
                yield text[released:upto]
                released = upto
        if len(run.thinking) > released:
            yield run.thinking[released:]
    finally:
        if prober is not None and not prober.done():
            # thinking ended (on its own, at the wall clock or on an error) before this
            # probe answered: its answer could no longer stop anything, so it is dropped,
            # and the trace says so rather than leaving a sent probe unaccounted for
            run.trace.append({"step": run.state.probes, "verdict": "abandoned", "tokens_at_probe": marks.before(held_at or 0)})
        for task in (reader, prober):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (reader, prober) if t is not None), return_exceptions=True)


# -- thinking: sequential -----------------------------------------------------------


async def thinking_segment(calls: DeerCalls, payload: dict[str, Any], run: Run) -> AsyncIterator[Piece]:
    """Stream one thinking segment, ending it (and its HTTP response) at the wall-clock deadline."""
    loop = asyncio.get_running_loop()
    agen = calls.api.stream(payload, calls.timeout)
    try:
        while True:
            try:
                piece = await asyncio.wait_for(agen.__anext__(), max(0.0, run.deadline - loop.time()))
            except StopAsyncIteration:
                return
            yield piece
    finally:
        await agen.aclose()


async def think_sequential(calls: DeerCalls, run: Run) -> AsyncIterator[str]:
    """One request at a time: stream thinking until a transition shows up, close
    that stream, probe, and if unsure resume from prompt + all thinking so far.

    Transitions are spotted here rather than with server stop strings because
    llama.cpp does not say which stop fired: an EOS, </think> and "Wait" would
    look alike, and a natural end would be mistaken for a transition. Closing
    the stream makes llama-cpp-python's server cancel the generation (it
    checks for a disconnect after every token) and vLLM abort the request.
    """
    s = calls.settings
    loop = asyncio.get_running_loop()
    text = ""
    released = 0
    scan = 0
    probing = run.probing
    hold = max(len(t) for t in s.transitions) - 1
    marks = run.marks
    while True:
        run.state.elapsed_s = time.perf_counter() - run.started
        limit = check_limits(run.state)
        if limit is not None:
            exit_thinking(run, limit.reason, None, text)
            break
        watch = probing and may_probe(run.state, run.cfg)
        budget_left = run.state.thinking_budget - run.state.thinking_tokens
        payload = calls.payload(run, run.prompt + text, budget_left, [calls.close_tag])
        found: tuple[int, str] | None = None
        finish: str | None = None
        detected_at = 0.0
        try:
            async with aclosing(thinking_segment(calls, payload, run)) as segment:
                async for piece in segment:
                    run.state.thinking_tokens += piece.tokens
                    text += piece.text
                    marks.add(len(text), run.state.thinking_tokens)
                    finish = piece.finish_reason or finish
                    if watch and (found := find_transition(text, scan, s.transitions)) is not None:
                        detected_at = piece.at
                        break  # leaving the block closes the stream
                    upto = len(text) - hold if watch else len(text)
                    if upto > released:
                        yield text[released:upto]
                        released = upto
        except TimeoutError:
            exit_thinking(run, "wall_clock", None, text)
            break
        except errors.UpstreamError as e:
            if not text:
                raise
            log.warning("deer thinking segment failed after %d chars: %s", len(text), e)
            exit_thinking(run, "error", None, text)
            break
        if found is None:
            exit_thinking(run, "budget" if finish == "length" else "natural_end", None, text)
            break
        pos, word = found
        run.state.probes += 1
        run.stats.probes = step = run.state.probes
        try:
            probe_result, n, trace = await asyncio.wait_for(
                calls.probe(run, text[:pos], step, detected_at), max(0.0, run.deadline - loop.time())
            )
        except TimeoutError:
            exit_thinking(run, "wall_clock", None, text[:pos])
            break
        verdict = record_verdict(run, probe_result, n, trace, marks.before(pos))
        if isinstance(verdict, Exit):
            exit_thinking(run, verdict.reason, step, text[:pos])
            break
        # resume from everything generated so far (the transition included), so
        # the continuation stays as close as possible to the uninterrupted one
        probing = verdict.probe_more
        scan = pos + len(word)
    if len(run.thinking) > released:
        yield run.thinking[released:]
