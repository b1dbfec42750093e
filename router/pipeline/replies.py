"""The pipeline's reply shape, an OpenAI chat (or text) completion dict, and its chunk
stream: fold chunks into one completion and split one back into chunks, its text, and
a token estimate when an upstream reports no usage."""

from __future__ import annotations

import time
from typing import Any

from policies.features import message_text

# -- chunks <-> completion ---------------------------------------------------------


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold a chat or completions chunk stream into the equivalent non-stream object."""
    if not chunks:
        raise ValueError("no chunks to assemble")
    first = chunks[0]
    chat = first.get("object") == "chat.completion.chunk" or any(
        "delta" in c for ch in chunks for c in ch.get("choices", [])
    )
    content: list[str] = []
    reasoning: list[str] = []
    tool_calls: dict[int, dict[str, Any]] = {}
    logprobs: list[Any] = []
    finish: str | None = None
    usage = None
    role = "assistant"
    for ch in chunks:
        if ch.get("usage"):
            usage = ch["usage"]
        for c in ch.get("choices", []):
            if c.get("finish_reason"):
                finish = c["finish_reason"]
            lp = c.get("logprobs")
            if chat:
                d = c.get("delta") or {}
                role = d.get("role") or role
                if d.get("content"):
                    content.append(d["content"])
                if d.get("reasoning_content"):
                    reasoning.append(d["reasoning_content"])
                for tc in d.get("tool_calls") or []:
                    slot = tool_calls.setdefault(
                        tc.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                    if tc.get("id"):
                        slot["id"] = tc["id"]
                    fn = tc.get("function") or {}
                    slot["function"]["name"] += fn.get("name") or ""
                    slot["function"]["arguments"] += fn.get("arguments") or ""
                if lp and lp.get("content"):
                    logprobs.extend(lp["content"])
            else:
                content.append(c.get("text") or "")
                if lp:
                    logprobs.append(lp)
    out: dict[str, Any] = {
        "id": first.get("id"),
        "created": first.get("created", int(time.time())),
        "model": first.get("model"),
    }
    if chat:
        message: dict[str, Any] = {"role": role, "content": "".join(content) if (content or not tool_calls) else None}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if tool_calls:
            message["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
        out["object"] = "chat.completion"
        out["choices"] = [
            {"index": 0, "message": message, "finish_reason": finish, "logprobs": {"content": logprobs} if logprobs else None}
        ]
    else:
        merged = None
        if logprobs:
            merged = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            for lp in logprobs:
                for k in merged:
                    merged[k].extend(lp.get(k) or [])
        out["object"] = "text_completion"
        out["choices"] = [{"index": 0, "text": "".join(content), "finish_reason": finish, "logprobs": merged}]
    if usage:
        out["usage"] = usage
    return out


def to_chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a completion into a chunk stream a streaming client accepts."""
    base = {"id": completion.get("id"), "created": completion.get("created"), "model": completion.get("model")}
    choice = (completion.get("choices") or [{}])[0]
    out: list[dict[str, Any]] = []
    if completion.get("object") == "text_completion":
        text = choice.get("text") or ""
        out.append({**base, "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}]})
        out.append({**base, "object": "text_completion", "choices": [{"index": 0, "text": "", "finish_reason": choice.get("finish_reason") or "stop", "logprobs": None}]})
    else:
        msg = choice.get("message") or {}
        obj = "chat.completion.chunk"

        def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "object": obj, "choices": [{"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}]}

        out.append(delta({"role": "assistant", "content": ""}))
        if msg.get("reasoning_content"):
            out.append(delta({"reasoning_content": msg["reasoning_content"]}))
        if msg.get("content"):
            out.append(delta({"content": msg["content"]}))
        for i, tc in enumerate(msg.get("tool_calls") or []):
            out.append(delta({"tool_calls": [{"index": i, **tc}]}))
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
