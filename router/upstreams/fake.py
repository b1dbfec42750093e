"""An in-process upstream for tests and benchmarks (shipped in the package, as
httpx ships MockTransport): answers are produced by a plain function."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from router.errors import UpstreamError
from router.types import new_id
from router.upstreams.base import CallContext


@dataclass
class FakeReply:
    content: str
    reasoning: str | None = None
    token_prob: float = 0.9  # probability reported for every generated token
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str = "stop"


Handler = Callable[[dict[str, Any]], "FakeReply | str"]


def echo(body: dict[str, Any]) -> FakeReply:
    """Default handler: repeat the last user turn (or the prompt)."""
    if "messages" in body:
        last = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), {})
        text = _text(last.get("content"))
    else:
        prompt = body.get("prompt", "")
        text = prompt if isinstance(prompt, str) else str(prompt)
    return FakeReply(content=f"echo: {text}")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _tokens(text: str) -> list[str]:
    # whitespace-preserving pseudo tokens: "a b" -> ["a", " b"]
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out.append(word if i == 0 else " " + word)
    return [t for t in out if t]


class FakeUpstream:
    """Deterministic upstream. `handler` maps a request body to a reply; raise an
    `UpstreamError` from it to simulate a failure. `delay` adds latency."""

    def __init__(
        self,
        name: str = "fake",
        model: str = "fake-model",
        handler: Handler = echo,
        *,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
    ) -> None:
        self.name = name
        self.model = model
        self.handler = handler
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.calls: list[dict[str, Any]] = []
        self.closed = False
        self.cancelled_streams = 0

    def _reply(self, body: dict[str, Any]) -> FakeReply:
        self.calls.append(body)
        reply = self.handler(body)
        return FakeReply(content=reply) if isinstance(reply, str) else reply

    def _logprobs(self, tokens: list[str], prob: float, top: int) -> list[dict[str, Any]]:
        lp = math.log(max(prob, 1e-12))
        return [
            {
                "token": t,
                "logprob": lp,
                "bytes": list(t.encode()),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}][: max(top, 0)],
            }
            for t in tokens
        ]

    @staticmethod
    def _usage(body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
        if "messages" in body:
            prompt_tokens = sum(len(_text(m.get("content")).split()) + 4 for m in body["messages"])
        else:
            prompt_tokens = len(str(body.get("prompt", "")).split())
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self._reply(body)
        tokens = _tokens(reply.content)
        usage = self._usage(body, len(tokens) + len(_tokens(reply.reasoning or "")))
        want_lp = bool(body.get("logprobs"))
        top = int(body.get("top_logprobs") or 0)
        now = int(time.time())
        if "messages" not in body:
            choice: dict[str, Any] = {
                "index": 0,
                "text": reply.content,
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
            if want_lp:
                lps = self._logprobs(tokens, reply.token_prob, top)
                choice["logprobs"] = {
                    "tokens": [x["token"] for x in lps],
                    "token_logprobs": [x["logprob"] for x in lps],
                    "top_logprobs": [{t["token"]: t["logprob"] for t in x["top_logprobs"]} for x in lps],
                    "text_offset": [],
                }
            return {
                "id": new_id("cmpl"),
                "object": "text_completion",
                "created": now,
                "model": self.model,
                "choices": [choice],
                "usage": usage,
            }
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
            message["content"] = None
        return {
            "id": new_id("chatcmpl"),
            "object": "chat.completion",
            "created": now,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_calls else reply.finish_reason,
                    "logprobs": {"content": self._logprobs(tokens, reply.token_prob, top)} if want_lp else None,
                }
            ],
            "usage": usage,
        }

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self._reply(body)
        chat = "messages" in body
        cid = new_id("chatcmpl" if chat else "cmpl")
        now = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"
        want_lp = bool(body.get("logprobs"))
        top = int(body.get("top_logprobs") or 0)
        finished = False
        try:
            if chat:
                yield _chunk(cid, obj, now, self.model, {"role": "assistant", "content": ""})
                for tok in _tokens(reply.reasoning or ""):
                    if self.chunk_delay:
                        await asyncio.sleep(self.chunk_delay)
                    yield _chunk(cid, obj, now, self.model, {"reasoning_content": tok})
            for tok in _tokens(reply.content):
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                if chat:
                    c = _chunk(cid, obj, now, self.model, {"content": tok})
                    if want_lp:
                        c["choices"][0]["logprobs"] = {"content": self._logprobs([tok], reply.token_prob, top)}
                else:
                    c = {
                        "id": cid,
                        "object": obj,
                        "created": now,
                        "model": self.model,
                        "choices": [{"index": 0, "text": tok, "finish_reason": None, "logprobs": None}],
                    }
                yield c
            n = len(_tokens(reply.content)) + len(_tokens(reply.reasoning or ""))
            if chat:
                last = _chunk(cid, obj, now, self.model, {}, finish=reply.finish_reason)
            else:
                last = {
                    "id": cid,
                    "object": obj,
                    "created": now,
                    "model": self.model,
                    "choices": [{"index": 0, "text": "", "finish_reason": reply.finish_reason, "logprobs": None}],
                }
            last["usage"] = self._usage(body, n)
            yield last
            finished = True
        finally:
            if not finished:
                self.cancelled_streams += 1

    async def ready(self) -> dict[str, Any]:
        return {"ok": True, "kind": "fake"}

    async def close(self) -> None:
        self.closed = True


def _chunk(cid: str, obj: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def failing(error: UpstreamError) -> Handler:
    """A handler that always raises `error` (for fault tests)."""

    def handler(body: dict[str, Any]) -> FakeReply:
        raise error

    return handler
