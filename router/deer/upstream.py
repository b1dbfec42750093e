"""The DEER driver: runs a reasoning model through an OpenAI-compatible
server's `/v1/completions` and stops its thinking once a trial answer is
confident (the decision itself is `policies.deer`).

One request, as the client sees it:
    reasoning_content ... (thinking, streamed)  ->  content ... (the answer)

What happens upstream:
1. The chat messages are rendered once with the model's chat template
   (`router.deer.template`), then `think_open` is appended: from here on
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

Where the parts live: per-request state and its bookkeeping in
`router.deer.run`, the completions calls (payload, probe, answer) in
`router.deer.calls`, the two thinking loops in `router.deer.thinking`, and the
OpenAI response shaping in `router.deer.response`. This module holds the
`Upstream` users configure and the driver that strings those parts together.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx

from router.config import DeerSettings, ModelSettings
from router.deer.calls import DeerCalls
from router.deer.response import collect_response, stream_chunks
from router.deer.run import start_run
from router.deer.template import PromptRenderer
from router.deer.thinking import think_concurrent, think_sequential
from router.upstreams.base import CallContext
from router.upstreams.completions import Completions


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
        return await collect_response(self._drive(body, ctx), body, self.model)

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        # aclosing: closing this iterator (client gone) closes the driver at once
        async with aclosing(stream_chunks(self._drive(body, ctx), body, self.model)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def ready(self) -> dict[str, Any]:
        try:
            resp = await self._client.get(f"{self.api_base}/models", timeout=2.0)
            return {"ok": resp.status_code < 500, "status": resp.status_code, "base": self.api_base, "deer": True}
        except httpx.HTTPError as e:
            return {"ok": False, "error": type(e).__name__, "base": self.api_base, "deer": True}

    async def close(self) -> None:
        await self._client.aclose()

    # -- the driver ----------------------------------------------------------------

    def _timeout(self, ctx: CallContext) -> httpx.Timeout:
        t = ctx.timeout or self.timeout
        return httpx.Timeout(t, connect=min(t, self.connect_timeout))

    async def _drive(self, body: dict[str, Any], ctx: CallContext) -> AsyncGenerator[tuple[str, Any], None]:
        run = await start_run(body, ctx, self.settings, self._renderer)
        ctx.extra["deer_trace"] = run.trace
        calls = DeerCalls(self._api, self.model, self.settings, self.close_tag, self._timeout(ctx))
        think = think_concurrent if self.settings.probe_mode == "concurrent" else think_sequential
        run.stats.sequential = self.settings.probe_mode == "sequential"  # probes then pause thinking
        agen = think(calls, run)
        try:
            async for text in agen:
                yield "reasoning", text
        finally:
            await agen.aclose()
        if not run.enabled and run.stats.reason in ("natural_end", "budget"):
            run.stats.reason = "off"
        run.stats.thinking_tokens = run.state.thinking_tokens
        answer = calls.answer(run)
        try:
            async for text in answer:
                yield "content", text
        finally:
            await answer.aclose()
        yield "run", run
