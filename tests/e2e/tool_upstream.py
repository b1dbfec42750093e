"""A scripted, strict OpenAI-compatible chat server on loopback, and a real
`thinkgate serve` in front of it, for client tests that need tool calls (the
embedded SmolLM2 does not make them).

The upstream plays three models: `tool-fast`; `tool-think`, which also
answers with `reasoning_content`; `tool-slow`, which streams a word every 0.2 s. With tools and a user turn last it calls the
first tool; after a tool result it answers "The tool said: <result>". It is
strict like DeepSeek, Groq or Mistral: a request field or message field the
OpenAI chat API does not define is a 400, so thinking that leaks back into the
history cannot hide behind a lenient fake.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.serve import serve

ROOT = Path(__file__).resolve().parents[2]

_MESSAGE_FIELDS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}
_REQUEST_FIELDS = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "max_tokens", "max_completion_tokens",
    "presence_penalty", "frequency_penalty", "seed", "user", "logit_bias", "stop", "logprobs", "top_logprobs", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "metadata", "store", "reasoning_effort", "service_tier",
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reject(message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}, status_code=400
    )


def _check(body: dict[str, Any]) -> str | None:
    unknown = set(body) - _REQUEST_FIELDS
    if unknown:
        return f"unknown request field(s) {', '.join(sorted(unknown))}"
    for i, m in enumerate(body.get("messages") or []):
        allowed = _MESSAGE_FIELDS.get(m.get("role"))
        if allowed is None:
            return f"messages[{i}]: unknown role {m.get('role')!r}"
        extra = set(m) - allowed
        if extra:
            return f"messages[{i}]: unknown field(s) {', '.join(sorted(extra))} for role '{m['role']}'"
    return None


def _args(tool: dict[str, Any]) -> str:
    props = ((tool.get("function") or {}).get("parameters") or {}).get("properties") or {}
    return json.dumps({k: "Paris" for k in props})


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    msgs = body["messages"]
    last = msgs[-1]
    think = "think" in body["model"]
    out: dict[str, Any] = {
        "content": None,
        "tool_calls": None,
        "reasoning": "I should look this up." if think else None,
    }
    if last["role"] == "tool":
        out["content"] = f"The tool said: {last['content']}"
    elif body.get("tools") and body.get("tool_choice") != "none":
        tool = body["tools"][0]
        n = sum(1 for m in msgs if m["role"] == "assistant")
        out["tool_calls"] = [{"id": f"call_{n}_{int(time.time() * 1000) % 100000}", "type": "function",
                              "function": {"name": tool["function"]["name"], "arguments": _args(tool)}}]  # fmt: skip
    else:
        out["content"] = "Hello from the tool upstream."
    return out


async def chat(request: Request) -> Response:
    body = await request.json()
    problem = _check(body)
    if problem:
        return _reject(problem)
    r = _reply(body)
    usage = {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
    base = {"id": "chatcmpl-tool", "created": int(time.time()), "model": body["model"]}
    if not body.get("stream"):
        msg: dict[str, Any] = {"role": "assistant", "content": r["content"]}
        if r["reasoning"]:
            msg["reasoning_content"] = r["reasoning"]
        if r["tool_calls"]:
            msg["tool_calls"] = r["tool_calls"]
        finish = "tool_calls" if r["tool_calls"] else "stop"
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                "usage": usage,
            }
        )

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        c = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(c).encode() + b"\n\n"

    async def gen() -> Any:
        yield chunk({"role": "assistant", "content": ""})
        if r["reasoning"]:
            for w in r["reasoning"].split(" "):
                yield chunk({"reasoning_content": w + " "})
        if r["content"]:
            words = r["content"].split(" ")
            for i, w in enumerate(words):
                if "slow" in body["model"]:
                    await asyncio.sleep(0.2)  # a slow generation: the client must see each word as it comes
                yield chunk({"content": w if i == 0 else " " + w})
        for i, tc in enumerate(r["tool_calls"] or []):
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": tc["id"],
                            "type": "function",
                            "function": {"name": tc["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
            a = tc["function"]["arguments"]
            for j in range(0, len(a), 5):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": a[j : j + 5]}}]})
        yield chunk({}, "tool_calls" if r["tool_calls"] else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield (
                b"data: "
                + json.dumps({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}).encode()
                + b"\n\n"
            )
        yield b"data: [DONE]\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream")


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": m, "object": "model"} for m in ("tool-fast", "tool-think")]})


class ToolUpstream:
    def __init__(self) -> None:
        self.port = _free_port()
        app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ToolUpstream:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the tool upstream did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


CONFIG = """
models:
  fast: {{provider: openai, model: tool-fast, api_base: "{base}", logprobs: false, timeout: 30}}
  reasoning: {{provider: openai, model: tool-think, api_base: "{base}", reasoning: true, logprobs: false, timeout: 30}}
  slow: {{provider: openai, model: tool-slow, api_base: "{base}", logprobs: false, timeout: 30}}
routes:
  auto: {{fast: fast, reasoning: reasoning, default: fast}}
  fast: {{pin: fast}}
  reasoning: {{pin: reasoning}}
classifier: {{enabled: false}}
selfref: {{enabled: false}}
"""


@pytest.fixture(scope="session")
def tool_gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `thinkgate serve` (its own process) in front of the scripted tool upstream."""
    with ToolUpstream() as up:
        d = tmp_path_factory.mktemp("toolgw")
        cfg = d / "thinkgate.yaml"
        cfg.write_text(CONFIG.format(base=up.api_base))
        with serve(d, cfg, timeout=120) as url:
            yield url
