"""The pipeline's reply (an OpenAI chat completion, or its chunk stream) -> an
Anthropic `message`, or Anthropic's stream of events.

Thinking blocks carry `signature: SIGNATURE`. Anthropic signs thinking so it can be
verified when sent back; thinkgate's thinking comes from whatever model answered, so
the value is a fixed marker, not a signature (Anthropic SDKs only need the field).
Thinking sent back in later turns is dropped before the upstream anyway.

`stop_reason`: stop -> end_turn, length -> max_tokens, tool_calls -> tool_use,
content_filter -> refusal. `stop_sequence` is reported when the upstream names the
sequence that matched (vLLM's `stop_reason` field); upstreams that don't (OpenAI,
llama.cpp) give `end_turn` for a stop at a sequence too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

SIGNATURE = "thinkgate-unsigned"

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id(upstream_id: Any) -> str:
    tail = str(upstream_id).split("-", 1)[-1] if upstream_id else uuid.uuid4().hex[:24]
    return f"msg_{tail}"


def stop_reason(finish: str | None, matched: Any, stop_sequences: list[str]) -> tuple[str, str | None]:
    if finish in (None, "stop") and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    return _STOP.get(finish or "stop", "end_turn"), None


def _input(arguments: Any) -> dict[str, Any]:
    """Tool arguments as the object Anthropic's `input` must be. A model that wrote
    something that is not a JSON object keeps it, under `_raw_arguments`."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return {"_raw_arguments": str(arguments)}
    return value if isinstance(value, dict) else {"_raw_arguments": str(arguments)}


def _usage(usage: dict[str, Any] | None) -> dict[str, int]:
    u = usage or {}
    return {
        "input_tokens": int(u.get("prompt_tokens") or 0),
        "output_tokens": int(u.get("completion_tokens") or 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def to_message(
    completion: dict[str, Any], *, model: str, thinking: bool, stop_sequences: list[str], omit: bool = False
) -> dict[str, Any]:
    """`omit`: thinking display "omitted", a thinking block with its signature and no text."""
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if thinking and isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": "" if omit else reasoning, "signature": SIGNATURE})
    text = msg.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for tc in msg.get("tool_calls") or []:
        fn = tc.get("function") or {}
        content.append({
            "type": "tool_use",
            "id": tc.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
            "name": fn.get("name") or "",
            "input": _input(fn.get("arguments")),
        })  # fmt: skip
    reason, seq = stop_reason(choice.get("finish_reason"), choice.get("stop_reason"), stop_sequences)
    if reason == "end_turn" and msg.get("tool_calls"):
        reason = "tool_use"  # some upstreams finish a tool call with "stop"
    out: dict[str, Any] = {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": _usage(completion.get("usage")),
    }
    if "thinkgate" in completion:  # x-thinkgate-debug: the decision record
        out["thinkgate"] = completion["thinkgate"]
    return out


# -- streaming ------------------------------------------------------------------


def event(kind: str, data: dict[str, Any]) -> bytes:
    return (
        f"event: {kind}\ndata: ".encode()
        + json.dumps({"type": kind, **data}, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n\n"
    )


def error_event(err_type: str, message: str) -> bytes:
    return event("error", {"error": {"type": err_type, "message": message}})


class _Blocks:
    """Which content block is open: Anthropic streams one block at a time, each
    between content_block_start and content_block_stop, indexed in order."""

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None  # "thinking" | "text" | "tool_use"
        self.tool: int | None = None  # the OpenAI tool_calls index of an open tool_use

    def close(self) -> list[bytes]:
        if self.kind is None:
            return []
        out = []
        if self.kind == "thinking":
            out.append(
                event(
                    "content_block_delta",
                    {"index": self.index, "delta": {"type": "signature_delta", "signature": SIGNATURE}},
                )
            )
        out.append(event("content_block_stop", {"index": self.index}))
        self.kind = self.tool = None
        return out

    def open(self, kind: str, block: dict[str, Any], tool: int | None = None) -> list[bytes]:
        out = self.close()
        self.index += 1
        self.kind, self.tool = kind, tool
        out.append(event("content_block_start", {"index": self.index, "content_block": block}))
        return out


async def to_events(
    chunks: AsyncIterator[dict[str, Any]],
    *,
    model: str,
    thinking: bool,
    stop_sequences: list[str],
    input_estimate: int,
    omit: bool = False,
) -> AsyncIterator[bytes]:
    """OpenAI chunks -> Anthropic SSE bytes: message_start, ping, blocks, message_delta,
    message_stop; an error chunk from the pipeline becomes an `error` event and ends it."""
    started = False
    blocks = _Blocks()
    finish: str | None = None
    matched: Any = None
    usage: dict[str, Any] | None = None
    any_tool = False
    async for ch in chunks:
        if "error" in ch and not ch.get("choices"):
            yield error_event(*_stream_error(ch["error"] or {}))
            return
        if not started:
            started = True
            start = {
                "id": message_id(ch.get("id")), "type": "message", "role": "assistant",
                "model": ch.get("model") or model, "content": [], "stop_reason": None, "stop_sequence": None,
                # the real count arrives with the last chunk and goes out in message_delta
                "usage": {"input_tokens": input_estimate, "output_tokens": 0},
            }  # fmt: skip
            yield event("message_start", {"message": start})
            yield event("ping", {})
        if ch.get("usage"):
            usage = ch["usage"]
        for c in ch.get("choices") or []:
            d = c.get("delta") or {}
            reasoning = d.get("reasoning_content") or d.get("reasoning")
            if reasoning and thinking:
                if blocks.kind != "thinking":
                    for b in blocks.open("thinking", {"type": "thinking", "thinking": "", "signature": ""}):
                        yield b
                if not omit:
                    yield event(
                        "content_block_delta",
                        {"index": blocks.index, "delta": {"type": "thinking_delta", "thinking": reasoning}},
                    )
            if d.get("content"):
                if blocks.kind != "text":
                    for b in blocks.open("text", {"type": "text", "text": ""}):
                        yield b
                yield event(
                    "content_block_delta",
                    {"index": blocks.index, "delta": {"type": "text_delta", "text": d["content"]}},
                )
            for tc in d.get("tool_calls") or []:
                any_tool = True
                i = tc.get("index", 0)
                fn = tc.get("function") or {}
                if blocks.kind != "tool_use" or blocks.tool != i:
                    block = {
                        "type": "tool_use",
                        "id": tc.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                        "name": fn.get("name") or "",
                        "input": {},
                    }
                    for b in blocks.open("tool_use", block, tool=i):
                        yield b
                if fn.get("arguments"):
                    yield event(
                        "content_block_delta",
                        {"index": blocks.index, "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]}},
                    )
            if c.get("finish_reason"):
                finish = c["finish_reason"]
                matched = c.get("stop_reason", matched)
    if not started:  # an empty stream: the pipeline raises before that, but never leave a client hanging
        yield error_event("api_error", "the upstream sent an empty stream")
        return
    for b in blocks.close():
        yield b
    reason, seq = stop_reason(finish, matched, stop_sequences)
    if reason == "end_turn" and any_tool:
        reason = "tool_use"
    u = _usage(usage)
    yield event("message_delta", {
        "delta": {"stop_reason": reason, "stop_sequence": seq},
        "usage": {"input_tokens": u["input_tokens"] if usage else input_estimate, "output_tokens": u["output_tokens"]},
    })  # fmt: skip
    yield event("message_stop", {})


def _stream_error(err: dict[str, Any]) -> tuple[str, str]:
    """The pipeline's mid-stream error (OpenAI's error object) as Anthropic's type and message."""
    kind = err.get("type")
    if err.get("code") == "upstream_unavailable":
        kind = "overloaded_error"
    elif kind not in ("rate_limit_error", "invalid_request_error"):
        kind = "api_error"
    return str(kind), str(err.get("message") or "the upstream failed")
