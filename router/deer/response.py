"""Shaping the DEER driver's events into OpenAI responses: one
`chat.completion` / `text_completion` body for `complete()`, chunks for
`stream()`. The driver (`DeerUpstream._drive`) yields ("reasoning", text),
("content", text) and finally ("run", Run); thinking goes out as
`reasoning_content`, the answer as `content`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from router.deer.run import Run, usage
from router.types import new_id


async def collect_response(drive: AsyncIterator[tuple[str, Any]], body: dict[str, Any], model: str) -> dict[str, Any]:
    reasoning: list[str] = []
    content: list[str] = []
    run: Run | None = None
    async for kind, value in drive:
        if kind == "reasoning":
            reasoning.append(value)
        elif kind == "content":
            content.append(value)
        elif kind == "run":
            run = value
    assert run is not None
    run_usage = usage(run)
    if "messages" not in body:
        return {
            "id": new_id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "text": "".join(content), "reasoning_content": "".join(reasoning),
                         "logprobs": None, "finish_reason": run.finish_reason}],
            "usage": run_usage,
        }  # fmt: skip
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
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
        "usage": run_usage,
    }


async def stream_chunks(
    drive: AsyncGenerator[tuple[str, Any], None], body: dict[str, Any], model: str
) -> AsyncIterator[dict[str, Any]]:
    chat = "messages" in body
    cid, created = new_id("chatcmpl" if chat else "cmpl"), int(time.time())

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, text: str = "") -> dict[str, Any]:
        if chat:
            choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        if delta and "reasoning_content" in delta:
            choice["reasoning_content"] = delta["reasoning_content"]
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
        }

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
                final["usage"] = usage(value)
                yield final
    finally:
        await drive.aclose()  # closes upstream responses, cancels probes
