"""A strict scripted OpenAI-compatible chat server on loopback for agent-CLI tests
(Claude Code here): it plays the model of a one-tool session.

- A user turn that names a file (`… /path/notes.txt …`) with a `Read` tool offered: it
  calls `Read` with that path (a real file the agent must read itself).
- A tool result last: "The tool said: <the result>", so the agent's output shows the
  tool's output came back through the gateway.
- Anything else: "Hello from the scripted upstream."

Strict like DeepSeek, Groq or Mistral (tests/e2e/tool_upstream.py's field lists): a
request field, message field or tool key the OpenAI chat API does not define is a 400,
so whatever a front end fails to translate or drop shows. Every request is kept.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.serve import free_port
from tests.e2e.tool_upstream import _check, _reject

HELLO = "Hello from the scripted upstream."
_TOOL_KEYS = {"type", "function"}
_FUNCTION_KEYS = {"name", "description", "parameters", "strict"}
_PATH = re.compile(r"(/[\w./-]+\.txt)")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def _strict(body: dict[str, Any]) -> str | None:
    problem = _check(body)
    if problem:
        return problem
    for i, t in enumerate(body.get("tools") or []):
        if set(t) - _TOOL_KEYS or t.get("type") != "function" or set(t.get("function") or {}) - _FUNCTION_KEYS:
            return f"tools[{i}]: not an OpenAI function tool: {sorted(t)} {sorted(t.get('function') or {})}"
    return None


class ScriptedUpstream:
    def __init__(self, max_output: int = 8192) -> None:
        self.max_output = max_output  # a larger max_tokens is a 400, as real APIs refuse it
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.refused: list[str] = []
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def tool_results(self) -> list[str]:
        """The content of every tool message the upstream was sent."""
        return [m["content"] for b in self.requests for m in b["messages"] if m["role"] == "tool"]

    def _reply(self, body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        last = body["messages"][-1]
        if last["role"] == "tool":
            return f"The tool said: {_text(last['content'])}", None
        names = [t["function"]["name"] for t in body.get("tools") or []]
        path = _PATH.search(_text(last["content"])) if last["role"] == "user" else None
        if "Read" in names and path:
            n = len(self.requests)
            args = json.dumps({"file_path": path.group(1)})
            return None, {"id": f"call_{n}", "type": "function", "function": {"name": "Read", "arguments": args}}
        return HELLO, None

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        problem = _strict(body)
        if not problem and max(body.get("max_tokens") or 0, body.get("max_completion_tokens") or 0) > self.max_output:
            problem = f"max_tokens is too large: this model allows at most {self.max_output}"
        if problem:
            self.refused.append(problem)
            return _reject(problem)
        self.requests.append(body)
        text, call = self._reply(body)
        base = {"id": f"chatcmpl-{len(self.requests)}", "created": int(time.time()), "model": body["model"]}
        usage = {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
        finish = "tool_calls" if call else "stop"
        if not body.get("stream"):
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if call:
                msg["tool_calls"] = [call]
            choice = {"index": 0, "message": msg, "finish_reason": finish}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        def chunk(delta: dict[str, Any], fin: str | None = None, **extra: Any) -> bytes:
            c = {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": fin}], **extra}
            return b"data: " + json.dumps(c).encode() + b"\n\n"

        def gen() -> Any:
            yield chunk({"role": "assistant", "content": ""})
            for i, w in enumerate((text or "").split(" ") if text else []):
                yield chunk({"content": w if i == 0 else " " + w})
            if call:
                head = {**call, "function": {"name": "Read", "arguments": ""}, "index": 0}
                yield chunk({"tool_calls": [head]})
                a = call["function"]["arguments"]
                for j in range(0, len(a), 7):
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": a[j : j + 7]}}]})
            yield chunk({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield b"data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    def __enter__(self) -> ScriptedUpstream:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the scripted upstream did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
