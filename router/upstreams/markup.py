"""Thinking delimiters never reach answer text.

Small models told to "think inside <think> and </think>" (the embedded
default's reasoning role) write a stray `</think>` into the answer after DEER
closed the block; models without a reasoning parser put `<think>...</think>`
inline in `content`. Either way a client would see markup as the answer, in
every protocol built on the pipeline's reply, and `calibrate collect` would
grade it. This wrapper sits on every configured model (router.deer.clients),
so the gateway and collect read the same clean text:

- text between `<think>` and `</think>` is thinking: it moves to
  `reasoning_content` (chat) or is dropped (text completions, which have no
  reasoning field);
- a delimiter on its own (an unpaired `</think>`) is dropped.

Streams are split the same way chunk by chunk; a tail that could be the start
of a delimiter split across chunks is held back until the next chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from router.upstreams.base import CallContext, Upstream

OPEN, CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Feed answer text in pieces; get (answer, thinking) text back, delimiters removed."""

    def __init__(self) -> None:
        self.inside = False
        self._held = ""

    def feed(self, text: str) -> tuple[str, str]:
        buf = self._held + text
        self._held = ""
        answer: list[str] = []
        thinking: list[str] = []
        while buf:
            o, c = buf.find(OPEN), buf.find(CLOSE)
            hits = [(i, t) for i, t in ((o, OPEN), (c, CLOSE)) if i >= 0]
            if not hits:
                keep = _partial_tail(buf)
                (thinking if self.inside else answer).append(buf[: len(buf) - keep])
                self._held = buf[len(buf) - keep :]
                break
            i, tag = min(hits)
            (thinking if self.inside else answer).append(buf[:i])
            self.inside = tag == OPEN  # an unpaired </think> just ends nothing
            buf = buf[i + len(tag) :]
        return "".join(answer), "".join(thinking)

    def flush(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        return ("", held) if self.inside else (held, "")


def _partial_tail(buf: str) -> int:
    """Length of the longest tail of `buf` that is a proper prefix of a delimiter."""
    for n in range(min(len(CLOSE) - 1, len(buf)), 0, -1):
        tail = buf[-n:]
        if OPEN.startswith(tail) or CLOSE.startswith(tail):
            return n
    return 0


def has_markup(text: str | None) -> bool:
    return bool(text) and (OPEN in text or CLOSE in text)  # type: ignore[operator]


def clean_completion(body: dict[str, Any]) -> dict[str, Any]:
    """A whole chat.completion / text_completion with its answers split (in place)."""
    for choice in body.get("choices") or []:
        msg = choice.get("message")
        holder, key = (msg, "content") if isinstance(msg, dict) else (choice, "text")
        text = holder.get(key)
        if not isinstance(text, str) or not has_markup(text):
            continue
        sp = ThinkSplitter()
        answer, thinking = sp.feed(text)
        a2, t2 = sp.flush()
        holder[key] = (answer + a2).strip()
        thinking = (thinking + t2).strip()
        if thinking and isinstance(msg, dict):
            before = msg.get("reasoning_content")
            msg["reasoning_content"] = f"{before}\n{thinking}" if before else thinking
    return body


class CleanAnswers:
    """Implements the Upstream protocol around `inner`, splitting thinking out of answers."""

    def __init__(self, inner: Upstream) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)  # DEER's extras, a fake's call list

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return clean_completion(await self.inner.complete(body, ctx))

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        splitters: dict[int, ThinkSplitter] = {}
        agen = self.inner.stream(body, ctx)
        try:
            async for chunk in agen:
                for choice in chunk.get("choices") or []:
                    _clean_choice(choice, splitters)
                yield chunk
        finally:
            close = getattr(agen, "aclose", None)
            if close is not None:
                await close()

    async def ready(self) -> dict[str, Any]:
        return await self.inner.ready()

    async def close(self) -> None:
        await self.inner.close()


def _clean_choice(choice: dict[str, Any], splitters: dict[int, ThinkSplitter]) -> None:
    delta = choice.get("delta")
    holder, key = (delta, "content") if isinstance(delta, dict) else (choice, "text")
    text = holder.get(key)
    idx = int(choice.get("index") or 0)
    sp = splitters.get(idx)
    if isinstance(text, str) and (sp is not None or has_markup(text) or "<" in text):
        sp = splitters.setdefault(idx, ThinkSplitter())
        answer, thinking = sp.feed(text)
    else:
        answer, thinking = (text, "") if isinstance(text, str) else (None, "")
    if choice.get("finish_reason") and sp is not None:  # the choice ends: nothing more will come
        a2, t2 = sp.flush()
        answer, thinking = (answer or "") + a2, thinking + t2
    if answer is not None or key in holder:
        holder[key] = answer if answer is not None else holder.get(key)
    if thinking and isinstance(delta, dict):
        delta["reasoning_content"] = (delta.get("reasoning_content") or "") + thinking
