"""A stand-in for the vLLM OpenAI server in the compose test (this machine has no GPU
and cannot pull vllm/vllm-openai). It runs inside the thinkgate image (starlette and
uvicorn are there) and answers /v1/models and /v1/chat/completions, streamed or not,
with a fixed reply for any model name; fields the OpenAI chat API does not define are
a 400, as on vLLM's strict servers. GET /stats says how many chat requests it answered,
so the test can tell a cached reply (no upstream call) from a fresh one.

    python fake_vllm.py PORT
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FIELDS = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "max_tokens", "max_completion_tokens",
    "presence_penalty", "frequency_penalty", "seed", "user", "logit_bias", "stop", "logprobs", "top_logprobs", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "metadata", "store", "reasoning_effort", "service_tier",
}  # fmt: skip
REPLY = "Paris is the capital of France."
answered = {"chat": 0}


async def chat(request: Request) -> Response:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return JSONResponse({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}, 400)
    unknown = set(body) - FIELDS
    if unknown or not isinstance(body.get("messages"), list) or not body.get("model"):
        msg = f"unknown fields {sorted(unknown)}" if unknown else "'model' and 'messages' are required"
        return JSONResponse({"error": {"message": msg, "type": "invalid_request_error"}}, 400)
    answered["chat"] += 1
    base: dict[str, Any] = {"id": f"chatcmpl-{answered['chat']}", "created": int(time.time()), "model": body["model"]}
    usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    if not body.get("stream"):
        msg = {"role": "assistant", "content": REPLY}
        return JSONResponse({**base, "object": "chat.completion", "usage": usage,
                             "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]})  # fmt: skip

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        c = {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(c)}\n\n"

    async def events() -> Any:
        yield chunk({"role": "assistant", "content": ""})
        for i, word in enumerate(REPLY.split()):
            yield chunk({"content": word if i == 0 else " " + word})
        yield chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "object": "model"}]})


async def stats(request: Request) -> Response:
    return JSONResponse(answered)


app = Starlette(routes=[
    Route("/v1/chat/completions", chat, methods=["POST"]),
    Route("/v1/models", models),
    Route("/stats", stats),
])  # fmt: skip

if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=int(sys.argv[1]), log_level="warning")
