"""The pipeline's reply shape, an OpenAI chat (or text) completion dict, and its chunk
stream: fold chunks into one completion and split one back into chunks, its text, and
a token estimate when an upstream reports no usage."""

from __future__ import annotations

import time
from typing import Any

from policies.features import message_text

# -- chunks <-> completion ---------------------------------------------------------


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold a chat or completions chunk stream into the equivalent non-stream object
    (one choice per `index`, as n > 1 streams interleave them)."""
    if not chunks:
        raise ValueError("no chunks to assemble")
    first = chunks[0]
    chat = first.get("object") == "chat.completion.chunk" or any(
        "delta" in c for ch in chunks for c in ch.get("choices", [])
    )
    slots: dict[int, _Choice] = {}
    usage = None
    for ch in chunks:
        if ch.get("usage"):
            usage = ch["usage"]
        for c in ch.get("choices", []):
            slot = slots.get(c.get("index", 0))
            if slot is None:
                slot = slots[c.get("index", 0)] = _Choice()
            slot.add(c, chat)
    out: dict[str, Any] = {
        "id": first.get("id"),
        "created": first.get("created", int(time.time())),
        "model": first.get("model"),
        "object": "chat.completion" if chat else "text_completion",
        "choices": [slots[i].choice(i, chat) for i in sorted(slots)] or [_Choice().choice(0, chat)],
    }
    if usage:
        out["usage"] = usage
    return out


class _Choice:
    """One choice's pieces while a stream is folded."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[Any] = []
        self.finish: str | None = None
        self.role = "assistant"

    def add(self, c: dict[str, Any], chat: bool) -> None:
        if c.get("finish_reason"):
            self.finish = c["finish_reason"]
        lp = c.get("logprobs")
        if not chat:
            self.content.append(c.get("text") or "")
            if lp:
                self.logprobs.append(lp)
            return
        d = c.get("delta") or {}
        self.role = d.get("role") or self.role
        if d.get("content"):
            self.content.append(d["content"])
        if d.get("reasoning_content"):
            self.reasoning.append(d["reasoning_content"])
        for tc in d.get("tool_calls") or []:
            slot = self.tool_calls.setdefault(
                tc.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if tc.get("id"):
                slot["id"] = tc["id"]
            fn = tc.get("function") or {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""
        if lp and lp.get("content"):
            self.logprobs.extend(lp["content"])

    def choice(self, index: int, chat: bool) -> dict[str, Any]:
        if not chat:
            merged = None
            if self.logprobs:
                merged = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
                for lp in self.logprobs:
                    for k in merged:
                        merged[k].extend(lp.get(k) or [])
            return {"index": index, "text": "".join(self.content), "finish_reason": self.finish, "logprobs": merged}
        tool_calls = self.tool_calls
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.content) if (self.content or not tool_calls) else None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if tool_calls:
            message["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
        lp = {"content": self.logprobs} if self.logprobs else None
        return {"index": index, "message": message, "finish_reason": self.finish, "logprobs": lp}


def to_chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a completion into a chunk stream a streaming client accepts (every choice, in order)."""
    base = {"id": completion.get("id"), "created": completion.get("created"), "model": completion.get("model")}
    out: list[dict[str, Any]] = []
    for pos, choice in enumerate(completion.get("choices") or [{}]):
        i = choice.get("index", pos)
        if completion.get("object") == "text_completion":
            text = choice.get("text") or ""
            obj = "text_completion"
            out.append({**base, "object": obj, "choices": [{"index": i, "text": text, "finish_reason": None, "logprobs": None}]})
            out.append({**base, "object": obj, "choices": [{"index": i, "text": "", "finish_reason": choice.get("finish_reason") or "stop", "logprobs": None}]})
            continue
        msg = choice.get("message") or {}

        def delta(d: dict[str, Any], finish: str | None = None, i: int = i) -> dict[str, Any]:
            return {**base, "object": "chat.completion.chunk", "choices": [{"index": i, "delta": d, "finish_reason": finish, "logprobs": None}]}

        out.append(delta({"role": "assistant", "content": ""}))
        if msg.get("reasoning_content"):
            out.append(delta({"reasoning_content": msg["reasoning_content"]}))
        if msg.get("content"):
            out.append(delta({"content": msg["content"]}))
        for k, tc in enumerate(msg.get("tool_calls") or []):
            out.append(delta({"tool_calls": [{"index": k, **tc}]}))
        out.append(delta({}, choice.get("finish_reason") or "stop"))
    if completion.get("usage"):
        out[-1] = {**out[-1], "usage": completion["usage"]}
    return out


def completion_text(completion: dict[str, Any]) -> str:
    choice = (completion.get("choices") or [{}])[0]
    if "message" in choice:
        return message_text((choice.get("message") or {}).get("content"))
    return str(choice.get("text") or "")


def estimate_tokens(text: str) -> int:
    # ~4 characters per token for English; used only when an upstream reports no usage
    return max(1, (len(text) + 3) // 4) if text else 0
