"""The DEER driver: runs a reasoning model through an OpenAI-compatible
server's `/v1/completions` and stops its thinking once a trial answer is
confident (the decision itself is `policies.deer`).

One request, as the client sees it:
    reasoning_content ... (thinking, streamed)  ->  content ... (the answer)

What happens upstream:
1. The chat messages are rendered once with the model's chat template
   (`router.chat_template`), then `think_open` is appended: from here on
   every call is a raw-prompt continuation of that string.
2. Thinking is generated with max_tokens = the thinking budget.
   - concurrent mode (vLLM): one streaming request stays open; when a
     transition ("Wait") shows up in the stream, a trial-answer probe
     (thinking before the transition + answer suffix, <= probe_max_tokens,
     logprobs) is sent at the same time. Text after the transition is held
     back from the client until the probe answers, so the reasoning the client
     saw is exactly what the answer is conditioned on. Exit: close the
     thinking stream (vLLM aborts a request whose connection closes), drop
     the held-back tail. Continue: release it and look for the next one.
   - sequential mode (servers that serve one request at a time, such as
     llama-cpp-python's, where a concurrent probe would wait for the thinking
     stream to finish): the thinking stream is closed at the transition, the
     probe runs, and thinking resumes from prompt + the thinking so far.
3. On exit (confident, budget, wall clock, natural end) the prompt becomes
   prompt + thinking + think_close and the answer is streamed as `content`.

A failed or slow probe never ends thinking: it is treated as "not confident".
Closing the iterator (client gone) or cancelling the task closes every open
upstream response and cancels any probe in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from policies.deer import (
    AnswerKind,
    Continue,
    Exit,
    PolicyConfig,
    Probe,
    ThinkState,
    answer_kind,
    check_limits,
    decide,
    may_probe,
    probe_stops,
)
from router import errors
from router.chat_template import PromptRenderer
from router.config import DeerSettings, ModelSettings
from router.protocol import message_text
from router.types import DeerStats, new_id
from router.upstreams.base import CallContext
from router.upstreams.completions import Completions, Piece

log = logging.getLogger("thinkgate.deer")

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


# -- per-request state -----------------------------------------------------------


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


class DeerUpstream:
    """An `Upstream` for reasoning models, driven by DEER (see module doc)."""

    def __init__(
        self,
        name: str,
        model: str,
        api_base: str,
        settings: DeerSettings,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
        gguf: Path | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.api_base = api_base.rstrip("/")
        self.settings = settings
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )
        self._api = Completions(self._client, self.api_base, name)
        self._renderer = PromptRenderer(
            settings.template,
            upstream=name,
            model=model,
            api_base=self.api_base,
            client=self._client,
            chat_template=settings.chat_template,
            gguf=gguf,
        )
        self.close_tag = settings.think_close.strip() or "</think>"

    @classmethod
    def from_settings(cls, name: str, ms: ModelSettings, *, api_base: str, gguf: Path | None = None) -> DeerUpstream:
        return cls(
            name,
            ms.model or name,
            api_base,
            ms.deer or DeerSettings(),
            api_key=ms.api_key,
            timeout=ms.timeout,
            connect_timeout=ms.connect_timeout,
            gguf=gguf,
        )

    # -- the Upstream protocol ----------------------------------------------------

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        reasoning: list[str] = []
        content: list[str] = []
        run: Run | None = None
        async for kind, value in self._drive(body, ctx):
            if kind == "reasoning":
                reasoning.append(value)
            elif kind == "content":
                content.append(value)
            elif kind == "run":
                run = value
        assert run is not None
        usage = self._usage(run)
        if "messages" not in body:
            return {
                "id": new_id("cmpl"),
                "object": "text_completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [{"index": 0, "text": "".join(content), "reasoning_content": "".join(reasoning),
                             "logprobs": None, "finish_reason": run.finish_reason}],
                "usage": usage,
            }  # fmt: skip
        return {
            "id": new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "reasoning_content": "".join(reasoning),
                        "content": "".join(content),
                    },
                    "logprobs": None,
                    "finish_reason": run.finish_reason,
                }
            ],
            "usage": usage,
        }

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        chat = "messages" in body
        cid, created = new_id("chatcmpl" if chat else "cmpl"), int(time.time())

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, text: str = "") -> dict[str, Any]:
            if chat:
                choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
                return {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self.model,
                    "choices": [choice],
                }
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            if delta and "reasoning_content" in delta:
                choice["reasoning_content"] = delta["reasoning_content"]
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": self.model,
                "choices": [choice],
            }

        drive = self._drive(body, ctx)
        try:
            if chat:
                yield chunk({"role": "assistant", "content": ""})
            async for kind, value in drive:
                if kind == "reasoning" and value:
                    yield chunk({"reasoning_content": value})
                elif kind == "content" and value:
                    yield chunk({"content": value}, text=value)
                elif kind == "run":
                    yield chunk({}, value.finish_reason)
                    final = chunk(None)
                    final["choices"] = []
                    final["usage"] = self._usage(value)
                    yield final
        finally:
            await drive.aclose()  # closes upstream responses, cancels probes

    async def ready(self) -> dict[str, Any]:
        try:
            resp = await self._client.get(f"{self.api_base}/models", timeout=2.0)
            return {"ok": resp.status_code < 500, "status": resp.status_code, "base": self.api_base, "deer": True}
        except httpx.HTTPError as e:
            return {"ok": False, "error": type(e).__name__, "base": self.api_base, "deer": True}

    async def close(self) -> None:
        await self._client.aclose()

    # -- the driver ----------------------------------------------------------------

    def _usage(self, run: Run) -> dict[str, int]:
        # thinking and answer are what the client gets; probe tokens are the
        # controller's own cost, reported in ctx.deer (and the x-thinkgate-deer header)
        completion = run.stats.thinking_tokens + run.stats.answer_tokens
        prompt = run.prompt_tokens or 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _timeout(self, ctx: CallContext) -> httpx.Timeout:
        t = ctx.timeout or self.timeout
        return httpx.Timeout(t, connect=min(t, self.connect_timeout))

    def _messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if "messages" in body:
            messages = [{**m, "content": message_text(m.get("content"))} for m in body["messages"]]
        else:
            prompt = body.get("prompt", "")
            messages = [{"role": "user", "content": prompt if isinstance(prompt, str) else message_text(prompt)}]
        tp = self.settings.thinking_prompt
        if tp:
            if messages and messages[0].get("role") == "system":
                messages[0] = {**messages[0], "content": f"{tp}\n\n{messages[0]['content']}"}
            else:
                messages.insert(0, {"role": "system", "content": tp})
        return messages

    async def _start(self, body: dict[str, Any], ctx: CallContext) -> Run:
        s = self.settings
        messages = self._messages(body)
        prompt, n_prompt = await self._renderer.render(messages)
        opener = s.think_open
        if opener.strip() and not prompt.rstrip().endswith(opener.strip()):
            prompt += opener  # templates such as DeepSeek-R1's open the block themselves
        last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        kind = answer_kind(last_user)
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
        )
        loop = asyncio.get_running_loop()
        stats = ctx.deer if ctx.deer is not None else DeerStats()  # filled in place: the caller may hold it
        ctx.deer = stats
        state = ThinkState(thinking_budget=max(1, int(max_tokens * s.thinking_budget)), wall_clock_s=s.wall_clock_s)
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

    def _payload(self, run: Run, prompt: str, max_tokens: int, stop: Any, **extra: Any) -> dict[str, Any]:
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

    async def _drive(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[tuple[str, Any]]:
        run = await self._start(body, ctx)
        ctx.extra["deer_trace"] = run.trace
        think = self._think_concurrent if self.settings.probe_mode == "concurrent" else self._think_sequential
        agen = think(run, ctx)
        try:
            async for text in agen:
                yield "reasoning", text
        finally:
            await agen.aclose()
        if not run.enabled and run.stats.reason in ("natural_end", "budget"):
            run.stats.reason = "off"
        run.stats.thinking_tokens = run.state.thinking_tokens
        answer = self._answer(run, ctx)
        try:
            async for text in answer:
                yield "content", text
        finally:
            await answer.aclose()
        yield "run", run

    # -- probing -------------------------------------------------------------------

    async def _probe(
        self, run: Run, prefix: str, step: int, detected_at: float, ctx: CallContext
    ) -> tuple[Probe | None, int, dict[str, Any]]:
        cpu0 = time.process_time()
        s = self.settings
        stops = probe_stops(run.kind, self.close_tag, s.require_think_close)
        payload = self._payload(
            run, run.prompt + prefix + s.answer_suffix.get(run.kind, s.answer_suffix.get("text", "")),
            s.probe_max_tokens, stops, temperature=0.0, logprobs=1,
        )  # fmt: skip
        for k in ("seed", "top_p", "top_k", "min_p"):
            payload.pop(k, None)  # greedy and deterministic
        trace: dict[str, Any] = {"step": step, "cpu_ms": 0.0}
        trace["detect_to_send_ms"] = (time.perf_counter() - detected_at) * 1000
        cpu = time.process_time() - cpu0
        t0 = time.perf_counter()
        try:
            data = await asyncio.wait_for(self._api.create(payload, self._timeout(ctx)), s.probe_timeout_s)
        except (errors.UpstreamError, TimeoutError) as e:
            trace.update(error=type(e).__name__, latency_ms=(time.perf_counter() - t0) * 1000, cpu_ms=cpu * 1000)
            # a rejected probe (4xx) is a configuration problem, not load: say so loudly
            level = logging.WARNING if isinstance(e, errors.UpstreamRejected) else logging.INFO
            log.log(level, "deer probe %d failed (%s: %s); thinking continues", step, type(e).__name__, getattr(e, "message", ""))
            return None, 0, trace
        trace["latency_ms"] = (time.perf_counter() - t0) * 1000
        cpu1 = time.process_time()
        try:
            probe, n = parse_probe(data, self.close_tag)
        except (KeyError, IndexError, TypeError, ValueError):
            probe, n = None, 0
            trace["error"] = "malformed"
        trace["cpu_ms"] = (cpu + time.process_time() - cpu1) * 1000
        trace["tokens"] = n
        return probe, n, trace

    def _verdict(self, run: Run, probe: Probe | None, n: int, trace: dict[str, Any]) -> Continue | Exit:
        cpu0 = time.process_time()
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

    def _exit(self, run: Run, reason: str, step: int | None, thinking: str) -> None:
        run.stats.reason = reason
        run.stats.exit_step = step
        run.thinking = thinking

    # -- thinking: concurrent ----------------------------------------------------------

    async def _think_concurrent(self, run: Run, ctx: CallContext) -> AsyncIterator[str]:
        s = self.settings
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        payload = self._payload(run, run.prompt, run.state.thinking_budget, [self.close_tag])
        if s.template == "server":
            # vLLM: usage on every event. Counting events undercounts (vLLM sends no
            # event for tokens it holds back while matching a stop string), and the
            # final usage event arrives after the finish event this loop stops at.
            payload["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}

        async def read() -> None:
            try:
                async for piece in self._api.stream(payload, self._timeout(ctx)):
                    queue.put_nowait(("piece", piece))
            except errors.UpstreamError as e:
                queue.put_nowait(("error", e))
                return
            queue.put_nowait(("end", None))

        async def probe(prefix: str, step: int, at: float, pos: int, word: str) -> None:
            result = await self._probe(run, prefix, step, at, ctx)
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
        detected_at = time.perf_counter()
        try:
            while True:
                try:
                    kind, item = await asyncio.wait_for(queue.get(), max(0.0, run.deadline - loop.time()))
                except TimeoutError:
                    self._exit(run, "wall_clock", None, text if held_at is None else text[:held_at])
                    break
                if kind == "error":
                    if not text:
                        raise item
                    log.warning("deer thinking stream failed after %d chars: %s", len(text), item)
                    self._exit(run, "error", None, text if held_at is None else text[:held_at])
                    break
                if kind == "piece":
                    text += item.text
                    run.state.thinking_tokens += item.tokens
                    if item.usage and isinstance(item.usage.get("completion_tokens"), int):
                        usage_tokens = item.usage["completion_tokens"]
                        run.state.thinking_tokens = usage_tokens  # the server's count wins
                    if item.finish_reason:
                        ended = True
                        run.finish_reason = item.finish_reason
                    detected_at = item.at
                elif kind == "end":
                    ended = True
                elif kind == "probe":
                    pos, word, step, (probe_result, n, trace) = item
                    prober, held_at = None, None
                    verdict = self._verdict(run, probe_result, n, trace)
                    if isinstance(verdict, Exit):
                        self._exit(run, verdict.reason, step, text[:pos])
                        break
                    probing = verdict.probe_more
                    scan = pos + len(word)
                    detected_at = time.perf_counter()
                if ended:
                    # thinking finished (or hit its budget) on its own: keep all of it
                    if usage_tokens is not None:
                        run.state.thinking_tokens = usage_tokens
                    reason = "budget" if run.finish_reason == "length" else "natural_end"
                    self._exit(run, reason, None, text)
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
            for task in (reader, prober):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(*(t for t in (reader, prober) if t is not None), return_exceptions=True)

    # -- thinking: sequential -----------------------------------------------------------

    async def _segment(self, payload: dict[str, Any], run: Run, ctx: CallContext) -> AsyncIterator[Piece]:
        """Stream one thinking segment, ending it (and its HTTP response) at the wall-clock deadline."""
        loop = asyncio.get_running_loop()
        agen = self._api.stream(payload, self._timeout(ctx))
        try:
            while True:
                try:
                    piece = await asyncio.wait_for(agen.__anext__(), max(0.0, run.deadline - loop.time()))
                except StopAsyncIteration:
                    return
                yield piece
        finally:
            await agen.aclose()

    async def _think_sequential(self, run: Run, ctx: CallContext) -> AsyncIterator[str]:
        """One request at a time: stream thinking until a transition shows up, close
        that stream, probe, and if unsure resume from prompt + all thinking so far.

        Transitions are spotted here rather than with server stop strings because
        llama.cpp does not say which stop fired: an EOS, </think> and "Wait" would
        look alike, and a natural end would be mistaken for a transition. Closing
        the stream makes llama-cpp-python's server cancel the generation (it
        checks for a disconnect after every token) and vLLM abort the request.
        """
        s = self.settings
        loop = asyncio.get_running_loop()
        text = ""
        released = 0
        scan = 0
        probing = run.probing
        hold = max(len(t) for t in s.transitions) - 1
        while True:
            run.state.elapsed_s = time.perf_counter() - run.started
            limit = check_limits(run.state)
            if limit is not None:
                self._exit(run, limit.reason, None, text)
                break
            watch = probing and may_probe(run.state, run.cfg)
            budget_left = run.state.thinking_budget - run.state.thinking_tokens
            payload = self._payload(run, run.prompt + text, budget_left, [self.close_tag])
            found: tuple[int, str] | None = None
            finish: str | None = None
            detected_at = 0.0
            try:
                async with aclosing(self._segment(payload, run, ctx)) as segment:
                    async for piece in segment:
                        run.state.thinking_tokens += piece.tokens
                        text += piece.text
                        finish = piece.finish_reason or finish
                        if watch and (found := find_transition(text, scan, s.transitions)) is not None:
                            detected_at = piece.at
                            break  # leaving the block closes the stream
                        upto = len(text) - hold if watch else len(text)
                        if upto > released:
                            yield text[released:upto]
                            released = upto
            except TimeoutError:
                self._exit(run, "wall_clock", None, text)
                break
            except errors.UpstreamError as e:
                if not text:
                    raise
                log.warning("deer thinking segment failed after %d chars: %s", len(text), e)
                self._exit(run, "error", None, text)
                break
            if found is None:
                self._exit(run, "budget" if finish == "length" else "natural_end", None, text)
                break
            pos, word = found
            run.state.probes += 1
            run.stats.probes = step = run.state.probes
            try:
                probe_result, n, trace = await asyncio.wait_for(
                    self._probe(run, text[:pos], step, detected_at, ctx), max(0.0, run.deadline - loop.time())
                )
            except TimeoutError:
                self._exit(run, "wall_clock", None, text[:pos])
                break
            verdict = self._verdict(run, probe_result, n, trace)
            if isinstance(verdict, Exit):
                self._exit(run, verdict.reason, step, text[:pos])
                break
            # resume from everything generated so far (the transition included), so
            # the continuation stays as close as possible to the uninterrupted one
            probing = verdict.probe_more
            scan = pos + len(word)
        if len(run.thinking) > released:
            yield run.thinking[released:]

    # -- the answer ------------------------------------------------------------------

    async def _answer(self, run: Run, ctx: CallContext) -> AsyncIterator[str]:
        budget = max(1, run.max_tokens - run.stats.thinking_tokens)
        payload = self._payload(run, run.prompt + run.thinking + self.settings.think_close, budget, run.answer_stop)
        if self.settings.template == "server":
            payload["stream_options"] = {"include_usage": True}
        tokens = 0
        usage_tokens: int | None = None
        finish = "stop"
        async for piece in self._api.stream(payload, self._timeout(ctx)):
            tokens += piece.tokens
            if piece.usage and isinstance(piece.usage.get("completion_tokens"), int):
                usage_tokens = piece.usage["completion_tokens"]
            if piece.finish_reason:
                finish = piece.finish_reason
            if piece.text:
                yield piece.text
        run.stats.answer_tokens = usage_tokens if usage_tokens is not None else tokens
        run.finish_reason = finish
