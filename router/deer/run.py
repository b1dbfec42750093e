"""Per-request DEER state: the `Run` built from a client body, and the
bookkeeping that moves it along (probe verdicts, the exit, usage). Kept apart
from the driver (`router.deer.upstream`) so the thinking loops (`router.deer.thinking`)
and the response shaping (`router.deer.response`) share one state type.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass, field
from typing import Any

from policies.deer import (
    AnswerKind,
    Continue,
    Exit,
    PolicyConfig,
    Probe,
    ThinkState,
    decide,
    probe_kind,
)
from policies.features import message_text
from router.config import DeerSettings
from router.deer.template import PromptRenderer
from router.types import DeerStats
from router.upstreams.base import CallContext

# sampling fields forwarded from the client's body to thinking and answer calls
_SAMPLING = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
)


# -- per-request state -----------------------------------------------------------


class TokenMarks:
    """How many tokens the thinking text up to a position spans: the count after
    each streamed piece, so a transition's position maps to the tokens before it
    (a token the position cuts through counts, as re-tokenising the kept text would)."""

    def __init__(self) -> None:
        self.ends: list[int] = [0]  # text length after each piece
        self.counts: list[int] = [0]  # tokens after each piece

    def add(self, text_len: int, tokens: int) -> None:
        if text_len > self.ends[-1]:
            self.ends.append(text_len)
            self.counts.append(tokens)

    def before(self, pos: int) -> int:
        i = bisect.bisect_right(self.ends, pos) - 1
        return self.counts[i] + (1 if pos > self.ends[i] else 0)


@dataclass
class Run:
    prompt: str  # rendered chat prompt + think_open
    kind: AnswerKind
    cfg: PolicyConfig
    state: ThinkState
    stats: DeerStats
    max_tokens: int
    sampling: dict[str, Any]
    answer_stop: Any
    probing: bool
    enabled: bool
    deadline: float  # loop.time()
    started: float
    thinking: str = ""
    prompt_tokens: int | None = None
    finish_reason: str = "stop"
    trace: list[dict[str, Any]] = field(default_factory=list)
    marks: TokenMarks = field(default_factory=TokenMarks)


def chat_messages(body: dict[str, Any], thinking_prompt: str | None) -> list[dict[str, Any]]:
    if "messages" in body:
        messages = [{**m, "content": message_text(m.get("content"))} for m in body["messages"]]
    else:
        prompt = body.get("prompt", "")
        messages = [{"role": "user", "content": prompt if isinstance(prompt, str) else message_text(prompt)}]
    tp = thinking_prompt
    if tp:
        if messages and messages[0].get("role") == "system":
            messages[0] = {**messages[0], "content": f"{tp}\n\n{messages[0]['content']}"}
        else:
            messages.insert(0, {"role": "system", "content": tp})
    return messages


async def start_run(body: dict[str, Any], ctx: CallContext, settings: DeerSettings, renderer: PromptRenderer) -> Run:
    s = settings
    messages = chat_messages(body, s.thinking_prompt)
    prompt, n_prompt = await renderer.render(messages)
    opener = s.think_open
    if opener.strip() and not prompt.rstrip().endswith(opener.strip()):
        prompt += opener  # templates such as DeepSeek-R1's open the block themselves
    last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    # the client's own messages (not the configured thinking prompt) say what answer it wants
    own = chat_messages(body, None)
    kind, kind_source = probe_kind(
        [str(m.get("content") or "") for m in own], last_user, body.get("response_format"), s.probe_kind
    )
    control = ctx.controls.deer
    enabled = s.enabled and control.enabled
    threshold = control.threshold if control.threshold is not None else s.threshold
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or s.max_tokens
    cfg = PolicyConfig(
        threshold=threshold,
        confidence=s.confidence,
        require_think_close=s.require_think_close,
        max_probes=s.max_probes if enabled else 0,
        on_max_probes=s.on_max_probes,
        kind=kind,
        scoring=s.family,
        close_tag=s.think_close.strip() or "</think>",
        exit_margin_tokens=s.exit_margin_tokens,
    )
    loop = asyncio.get_running_loop()
    stats = ctx.deer if ctx.deer is not None else DeerStats()  # filled in place: the caller may hold it
    ctx.deer = stats
    stats.family, stats.probe_kind, stats.kind_source = s.family, kind, kind_source
    stats.probe_temperature = s.probe_temperature
    # a client's own budget (Anthropic `thinking.budget_tokens`) replaces the configured share
    budget = control.budget_tokens if control.budget_tokens is not None else int(max_tokens * s.thinking_budget)
    if control.thinking_tokens is not None:  # routing.effort's budget for this P; the client's caps it
        budget = min(budget, control.thinking_tokens)
    state = ThinkState(thinking_budget=max(1, min(int(max_tokens), budget)), wall_clock_s=s.wall_clock_s)
    return Run(
        prompt=prompt,
        kind=kind,
        cfg=cfg,
        state=state,
        stats=stats,
        max_tokens=int(max_tokens),
        sampling={k: body[k] for k in _SAMPLING if body.get(k) is not None},
        answer_stop=body.get("stop"),
        probing=enabled and s.max_probes > 0,
        enabled=enabled,
        deadline=loop.time() + s.wall_clock_s,
        started=time.perf_counter(),
        prompt_tokens=n_prompt,
    )


def usage(run: Run) -> dict[str, int]:
    # thinking and answer are what the client gets; probe tokens are the
    # controller's own cost, reported in ctx.deer (and the x-thinkgate-deer header)
    completion = run.stats.thinking_tokens + run.stats.answer_tokens
    prompt = run.prompt_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def record_verdict(
    run: Run, probe: Probe | None, n: int, trace: dict[str, Any], tokens_at_probe: int | None = None
) -> Continue | Exit:
    """Decide on a probe; `tokens_at_probe`: the tokens the thinking before its transition spans."""
    cpu0 = time.process_time()
    run.state.tokens_at_probe = tokens_at_probe
    trace["tokens_at_probe"] = tokens_at_probe
    run.stats.probe_tokens += n
    run.state.elapsed_s = time.perf_counter() - run.started
    verdict = decide(run.state, probe, run.cfg)
    if verdict.confidence is not None:
        run.stats.confidence = verdict.confidence
    trace["confidence"] = verdict.confidence
    trace["verdict"] = verdict.reason if isinstance(verdict, Exit) else "continue"
    trace["cpu_ms"] = trace.get("cpu_ms", 0.0) + (time.process_time() - cpu0) * 1000
    run.trace.append(trace)
    return verdict


def exit_thinking(run: Run, reason: str, step: int | None, thinking: str) -> None:
    run.stats.reason = reason
    run.stats.exit_step = step
    run.thinking = thinking
    # the thinking the answer is conditioned on, in tokens (the paper's count; the
    # generated count, discarded tails included, is thinking_tokens)
    run.stats.kept_thinking_tokens = run.marks.before(len(thinking))
