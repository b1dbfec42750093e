"""Fold a streamed response back into one choice, so Self-Ref can score it.

A stream's text and logprobs arrive spread over chunks; `merge_stream` joins
them into the chat or completions choice shape that `policies.selfref.confidence`
reads, scoring exactly like the whole response would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def merge_stream(chunks: Iterable[Mapping[str, Any]], index: int = 0) -> dict[str, Any]:
    """Fold streamed chunks into one choice-like dict with text and logprobs.

    Works for `chat.completion.chunk` (delta.content + logprobs.content) and
    completions chunks (text + logprobs.tokens/...). The result can be passed to
    `confidence`; logprobs is None when no chunk carried any.
    """
    text: list[str] = []
    chat: list[Any] = []
    comp: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": []}
    finish = None
    is_chat = False
    for chunk in chunks:
        for ch in chunk.get("choices") or ():
            if ch.get("index", 0) != index:
                continue
            finish = ch.get("finish_reason") or finish
            if "delta" in ch:
                is_chat = True
                c = (ch.get("delta") or {}).get("content")
                if isinstance(c, str):
                    text.append(c)
            elif isinstance(ch.get("text"), str):
                text.append(ch["text"])
            lp = ch.get("logprobs")
            if not isinstance(lp, Mapping):
                continue
            if isinstance(lp.get("content"), list):
                chat.extend(lp["content"])
            elif isinstance(lp.get("tokens"), list):
                n = len(lp["tokens"])
                comp["tokens"].extend(lp["tokens"])
                comp["token_logprobs"].extend(lp.get("token_logprobs") or [None] * n)
                comp["top_logprobs"].extend(lp.get("top_logprobs") or [None] * n)
    joined = "".join(text)
    logprobs: dict[str, Any] | None = None
    if chat:
        logprobs = {"content": chat}
    elif comp["tokens"]:
        logprobs = comp
    if is_chat:
        return {"index": index, "message": {"role": "assistant", "content": joined}, "logprobs": logprobs, "finish_reason": finish}
    return {"index": index, "text": joined, "logprobs": logprobs, "finish_reason": finish}
