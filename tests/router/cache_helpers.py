"""Builders shared by the cache tests: requests, responses, unit vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from router.types import CacheControl, Caller, ChatRequest, Controls
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeReply, FakeUpstream

DIM = 384


@dataclass(frozen=True)
class OptIn(CacheControl):
    # stands in for CacheControl.opt_in until/after the protocol parses it
    opt_in: bool = True


def chat(
    text: str,
    *,
    tenant: str = "default",
    alias: str = "auto",
    history: list[dict[str, Any]] | None = None,
    cc: CacheControl | None = None,
    stream: bool = False,
    **body: Any,
) -> ChatRequest:
    messages = [*(history or []), {"role": "user", "content": text}]
    b = {"model": alias, "messages": messages, "temperature": 0, **body}
    return ChatRequest(
        endpoint="chat", alias=alias, body=b, messages=messages, stream=stream,
        controls=Controls(cache=cc or CacheControl()), caller=Caller(tenant=tenant),
    )  # fmt: skip


def completion(text: str, reasoning: str | None = None, finish: str | None = "stop") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


async def streamed(text: str, reasoning: str | None = None) -> list[dict[str, Any]]:
    up = FakeUpstream(handler=lambda body: FakeReply(content=text, reasoning=reasoning))
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": True}
    return [c async for c in up.stream(body, CallContext())]


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with `v` is exactly `similarity`."""
    u = rng.standard_normal(v.shape[0]).astype(np.float64)
    u -= u.dot(v) * v
    u /= np.linalg.norm(u)
    w = similarity * v.astype(np.float64) + np.sqrt(1 - similarity**2) * u
    return (w / np.linalg.norm(w)).astype(np.float32)
