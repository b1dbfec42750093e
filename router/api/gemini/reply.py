"""The pipeline's reply (an OpenAI chat completion, or its chunk stream) -> Gemini
GenerateContentResponse objects: one, or a stream of them as SSE (`alt=sse`) or
as one JSON array written as it grows (what Google sends without `alt=sse`).

finishReason: stop and tool_calls -> STOP (Gemini ends a function call with STOP),
length -> MAX_TOKENS, content_filter -> SAFETY. Thinking becomes parts with
`thought: true`, only when the request's thinkingConfig.includeThoughts asked for it.
A streamed function call goes out whole, in the chunk where its arguments end:
Gemini never splits one, and its SDKs parse `args` as an object.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

_FINISH = {"stop": "STOP", "tool_calls": "STOP", "function_call": "STOP", "length": "MAX_TOKENS",
           "content_filter": "SAFETY"}  # fmt: skip


def _args(arguments: Any) -> dict[str, Any]:
    """Arguments as the object `functionCall.args` must be; anything else is kept under `_raw_arguments`."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return {"_raw_arguments": str(arguments)}
    return value if isinstance(value, dict) else {"_raw_arguments": str(arguments)}


def usage_metadata(usage: dict[str, Any] | None) -> dict[str, int]:
    u = usage or {}
    p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    out = {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": int(u.get("total_tokens") or p + c)}
    thoughts = (u.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if isinstance(thoughts, int) and thoughts > 0:
        out["thoughtsTokenCount"] = thoughts
    return out


def _call(tc: dict[str, Any]) -> dict[str, Any]:
    fn = tc.get("function") or {}
    return {"functionCall": {"id": tc.get("id") or f"call_{uuid.uuid4().hex[:24]}", "name": fn.get("name") or "",
                             "args": _args(fn.get("arguments"))}}  # fmt: skip


def to_response(completion: dict[str, Any], *, model: str, include_thoughts: bool) -> dict[str, Any]:
    candidates = []
    for choice in completion.get("choices") or [{}]:
        msg = choice.get("message") or {}
        parts: list[dict[str, Any]] = []
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if include_thoughts and isinstance(reasoning, str) and reasoning:
            parts.append({"text": reasoning, "thought": True})
        if isinstance(msg.get("content"), str) and msg["content"]:
            parts.append({"text": msg["content"]})
        parts += [_call(tc) for tc in msg.get("tool_calls") or []]
        if not parts:
            parts.append({"text": ""})  # an empty answer still has a part: SDKs index parts[0]
        candidates.append({
            "content": {"role": "model", "parts": parts},
            "finishReason": _FINISH.get(choice.get("finish_reason") or "stop", "OTHER"),
            "index": int(choice.get("index") or 0),
        })  # fmt: skip
    out: dict[str, Any] = {
        "candidates": candidates,
        "usageMetadata": usage_metadata(completion.get("usage")),
        "modelVersion": completion.get("model") or model,
        "responseId": str(completion.get("id") or uuid.uuid4().hex),
    }
    if "thinkgate" in completion:  # x-thinkgate-debug: the decision record
        out["thinkgate"] = completion["thinkgate"]
    return out


# -- streaming ------------------------------------------------------------------

_STATUS = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def stream_error(err: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's mid-stream error (OpenAI's error object) as Google's."""
    code = {"upstream_unavailable": 503, "upstream_timeout": 504}.get(str(err.get("code")), 500)
    if err.get("type") == "rate_limit_error":
        code = 429
    elif err.get("type") == "invalid_request_error":
        code = 400
    msg = str(err.get("message") or "the upstream failed")
    return {"error": {"code": code, "message": msg, "status": _STATUS.get(code, "INTERNAL")}}


async def responses(
    chunks: AsyncIterator[dict[str, Any]], *, model: str, include_thoughts: bool
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI chunks -> GenerateContentResponse objects; an error chunk becomes Google's
    error object and ends the stream."""
    calls: dict[int, dict[int, dict[str, Any]]] = {}  # choice -> tool index -> call so far
    final: list[dict[str, Any]] = []  # the finishing candidates
    usage: dict[str, Any] | None = None
    rid, version = uuid.uuid4().hex, model
    started = False
    async for ch in chunks:
        if "error" in ch and not ch.get("choices"):
            yield stream_error(ch["error"] or {})
            return
        started = True
        rid = str(ch.get("id") or rid)
        version = ch.get("model") or version
        if ch.get("usage"):
            usage = ch["usage"]
        candidates = []
        for c in ch.get("choices") or []:
            i = int(c.get("index") or 0)
            d = c.get("delta") or {}
            parts: list[dict[str, Any]] = []
            reasoning = d.get("reasoning_content") or d.get("reasoning")
            if include_thoughts and isinstance(reasoning, str) and reasoning:
                parts.append({"text": reasoning, "thought": True})
            if isinstance(d.get("content"), str) and d["content"]:
                parts.append({"text": d["content"]})
            for tc in d.get("tool_calls") or []:
                slot = calls.setdefault(i, {}).setdefault(int(tc.get("index") or 0), {"function": {"arguments": ""}})
                fn = tc.get("function") or {}
                if tc.get("id"):
                    slot["id"] = tc["id"]
                if fn.get("name"):
                    slot["function"]["name"] = fn["name"]
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if c.get("finish_reason"):
                # held back to go out with the usage, as Google's last chunk carries both
                parts += [_call(tc) for _, tc in sorted(calls.pop(i, {}).items())]
                final.append({"content": {"role": "model", "parts": parts or [{"text": ""}]}, "index": i,
                              "finishReason": _FINISH.get(c["finish_reason"], "OTHER")})  # fmt: skip
            elif parts:
                candidates.append({"content": {"role": "model", "parts": parts}, "index": i})
        if candidates:
            yield {"candidates": candidates, "modelVersion": version, "responseId": rid}
    if not started:  # the pipeline raises before that, but never leave a client hanging
        yield stream_error({"message": "the upstream sent an empty stream"})
        return
    for i, tcs in sorted(calls.items()):  # a stream that ended without a finish_reason still delivers its calls
        final.append({"content": {"role": "model", "parts": [_call(tc) for _, tc in sorted(tcs.items())]},
                      "index": i, "finishReason": "STOP"})  # fmt: skip
    if not final:
        final.append({"content": {"role": "model", "parts": [{"text": ""}]}, "index": 0, "finishReason": "STOP"})
    last = {"candidates": final, "usageMetadata": usage_metadata(usage), "modelVersion": version, "responseId": rid}
    yield last


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


async def sse(objects: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for o in objects:
        yield b"data: " + _dump(o) + b"\r\n\r\n"


async def json_array(objects: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    first = True
    async for o in objects:
        yield (b"[" if first else b",\r\n") + _dump(o)
        first = False
    yield b"[]" if first else b"]"
