"""The `/v1/completions` calls one DEER request makes: the payload shape shared
by thinking, probe and answer calls, the trial-answer probe (sent, timed and
parsed), and the streamed answer. `DeerCalls` binds them to the upstream's
client, model and settings and to the request's timeout, so the thinking loops
(`router.deer.thinking`) take one argument instead of five.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from policies.deer import Probe, probe_stops
from router import errors, tracing
from router.config import DeerSettings
from router.deer.run import Run
from router.upstreams.completions import Completions

log = logging.getLogger("thinkgate.deer")


def parse_probe(data: dict[str, Any], think_close_tag: str) -> tuple[Probe, int]:
    """A completions response -> (Probe, generated token count).

    Reads the legacy completions logprobs (`tokens` + `token_logprobs`, as
    vLLM and llama.cpp return them) or chat-style `content` entries.
    """
    choice = data["choices"][0]
    text = choice.get("text") or ""
    lp = choice.get("logprobs") or {}
    tokens: list[str] = []
    logprobs: list[float | None] = []
    if isinstance(lp, dict) and isinstance(lp.get("tokens"), list):
        tokens = [str(t) for t in lp["tokens"]]
        logprobs = [v if isinstance(v, (int, float)) else None for v in lp.get("token_logprobs") or []]
    elif isinstance(lp, dict) and isinstance(lp.get("content"), list):
        tokens = [str(e.get("token", "")) for e in lp["content"]]
        logprobs = [e.get("logprob") for e in lp["content"]]
    logprobs = (logprobs + [None] * len(tokens))[: len(tokens)]
    finish = choice.get("finish_reason")
    # the Qwen3 rule: did the probe close the thinking block? vLLM names the stop
    # string that fired; llama.cpp does not, so a plain "stop" counts there
    closed = (
        think_close_tag in text
        or choice.get("stop_reason") == think_close_tag
        or ("stop_reason" not in choice and finish == "stop")
    )
    usage = data.get("usage") or {}
    n = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return Probe(tokens, logprobs, text=text, finish_reason=finish, closed_think=closed), int(
        n if isinstance(n, int) else len(tokens)
    )


@dataclass(frozen=True)
class DeerCalls:
    """The upstream calls of one request (built per request by `DeerUpstream`)."""

    api: Completions
    model: str
    settings: DeerSettings
    close_tag: str
    timeout: httpx.Timeout  # the request's (ctx.timeout or the upstream's)

    def payload(self, run: Run, prompt: str, max_tokens: int, stop: Any, **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max(1, max_tokens),
            **run.sampling,
        }
        if stop:
            payload["stop"] = stop
        if self.settings.template == "server":
            # vLLM: the prompt came from /detokenize and already holds BOS and the like
            payload["add_special_tokens"] = False
        payload.update(extra)
        return payload

    # -- probing -------------------------------------------------------------------

    async def probe(
        self, run: Run, prefix: str, step: int, detected_at: float
    ) -> tuple[Probe | None, int, dict[str, Any]]:
        cpu0 = time.process_time()
        s = self.settings
        stops = probe_stops(run.kind, self.close_tag, s.require_think_close, s.family)
        payload = self.payload(
            run, run.prompt + prefix + s.answer_suffix.get(run.kind, s.answer_suffix.get("text", "")),
            s.probe_max_tokens, stops, logprobs=1,
        )  # fmt: skip
        # the probe's own sampling, not the client's: greedy (0), the reference's sampled
        # probe (1.0, plain sampling), or None: whatever the server defaults to
        for k in ("temperature", "seed", "top_p", "top_k", "min_p"):
            payload.pop(k, None)
        if s.probe_temperature is not None:
            payload["temperature"] = s.probe_temperature
        trace: dict[str, Any] = {"step": step, "cpu_ms": 0.0}
        trace["detect_to_send_ms"] = (time.perf_counter() - detected_at) * 1000
        cpu = time.process_time() - cpu0
        t0 = time.perf_counter()
        try:
            with tracing.span("thinkgate.deer.probe", {"thinkgate.deer.step": step, "thinkgate.deer.kind": run.kind}) as sp:
                data = await asyncio.wait_for(self.api.create(payload, self.timeout), s.probe_timeout_s)
                sp.set("gen_ai.usage.output_tokens", (data.get("usage") or {}).get("completion_tokens"))
        except (errors.UpstreamError, TimeoutError) as e:
            trace.update(error=type(e).__name__, latency_ms=(time.perf_counter() - t0) * 1000, cpu_ms=cpu * 1000)
            run.stats.probe_ms += trace["latency_ms"]
            # a rejected probe (4xx) is a configuration problem, not load: say so loudly
            level = logging.WARNING if isinstance(e, errors.UpstreamRejected) else logging.INFO
            log.log(level, "deer probe %d failed (%s: %s); thinking continues", step, type(e).__name__, getattr(e, "message", ""))
            return None, 0, trace
        trace["latency_ms"] = (time.perf_counter() - t0) * 1000
        run.stats.probe_ms += trace["latency_ms"]
        cpu1 = time.process_time()
        try:
            probe, n = parse_probe(data, self.close_tag)
        except (KeyError, IndexError, TypeError, ValueError):
            probe, n = None, 0
            trace["error"] = "malformed"
        trace["cpu_ms"] = (cpu + time.process_time() - cpu1) * 1000
        trace["tokens"] = n
        return probe, n, trace

    # -- the answer ------------------------------------------------------------------

    async def answer(self, run: Run) -> AsyncIterator[str]:
        budget = max(1, run.max_tokens - run.stats.thinking_tokens)
        payload = self.payload(run, run.prompt + run.thinking + self.settings.think_close, budget, answer_stops(run.answer_stop, self.close_tag, self.settings.think_open))
        if self.settings.template == "server":
            payload["stream_options"] = {"include_usage": True}
        tokens = 0
        usage_tokens: int | None = None
        finish = "stop"
        async for piece in self.api.stream(payload, self.timeout):
            tokens += piece.tokens
            if piece.usage and isinstance(piece.usage.get("completion_tokens"), int):
                usage_tokens = piece.usage["completion_tokens"]
            if piece.finish_reason:
                finish = piece.finish_reason
            if piece.text:
                yield piece.text
        run.stats.answer_tokens = usage_tokens if usage_tokens is not None else tokens
        run.finish_reason = finish


def answer_stops(client_stop: Any, close_tag: str, think_open: str) -> list[str]:
    """The answer ends where the model opens or closes a thinking block again: SmolLM2
    told to think in tags wrote "...rounding.\n</think>" and went on (markup in the answer,
    and generation up to the token budget); the client's own stops come first."""
    stops = [client_stop] if isinstance(client_stop, str) else list(client_stop or [])
    for tag in (close_tag.strip(), think_open.strip()):
        if tag and tag not in stops:
            stops.append(tag)
    return stops
