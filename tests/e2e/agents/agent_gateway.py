"""A real `thinkgate serve` for coding-agent tests, between two recorders.

    agent --> RecordingProxy --> thinkgate serve --> AgentUpstream (scripted, strict)

`AgentUpstream` is a strict OpenAI-compatible chat server (a request or message
field the chat API does not define is a 400, as in tests/e2e/tool_upstream.py).
When tools are offered and the user asks about `notes.txt`, it calls the agent's
own harmless read tool with arguments that read that file (Codex's
`exec_command` runs `cat notes.txt`, opencode's `read` gets its absolute path,
the AI SDK scripts' `read_note` the name); after a tool result it answers
"The tool said: <result>"; otherwise it greets. Models with "think" in their
name also send `reasoning_content`. It keeps every request it was sent, so a
test can assert that the tool's output came back through thinkgate.

`RecordingProxy` forwards every request to thinkgate unchanged (streams too) and
keeps each one's method, path and status: a test asserts that no request of the
agent's session was refused, which also catches a client that silently retries
without a feature.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.serve import free_port, serve
from tests.e2e.tool_upstream import _check as strict_problem

NOTE = "The secret word is pelican-42."


def _tool_args(name: str, workdir: Path) -> dict[str, Any] | None:
    """Arguments that make each agent's own read tool print notes.txt (None: not a read tool)."""
    return {
        "exec_command": {"cmd": "cat notes.txt"},  # Codex CLI (unified exec)
        "shell": {"command": ["cat", "notes.txt"]},  # older Codex releases
        "read": {"filePath": str(workdir / "notes.txt")},  # opencode
        "read_note": {"name": "notes.txt"},  # tests/e2e/agents/node/ai_sdk_tool_loop.mjs
    }.get(name)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


class _Server:
    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("a test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class AgentUpstream:
    workdir: Path
    requests: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def tool_results(self) -> list[str]:
        """The content of every tool message the upstream was sent."""
        return [_text(m.get("content")) for b in self.requests for m in b["messages"] if m.get("role") == "tool"]

    def _reply(self, body: dict[str, Any]) -> dict[str, Any]:
        msgs = body["messages"]
        last = msgs[-1]
        user = next((_text(m.get("content")) for m in reversed(msgs) if m["role"] == "user"), "")
        out: dict[str, Any] = {"content": None, "tool_calls": None}
        if "think" in body["model"]:
            out["reasoning_content"] = "I should read the note."
        tools = body.get("tools") or []
        chosen = next(
            (t["function"]["name"] for t in tools if _tool_args(t["function"]["name"], self.workdir) is not None), None
        )
        if last["role"] == "tool":
            out["content"] = f"The tool said: {_text(last['content']).strip()}"
        elif chosen is not None and "notes.txt" in user and body.get("tool_choice") != "none":
            args = json.dumps(_tool_args(chosen, self.workdir))
            out["tool_calls"] = [{"id": f"call_{len(self.requests)}", "type": "function",
                                  "function": {"name": chosen, "arguments": args}}]  # fmt: skip
        else:
            out["content"] = "Hello from the scripted upstream."
        return out

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        problem = strict_problem(body)
        if problem:
            self.rejected.append(problem)
            return JSONResponse({"error": {"message": problem, "type": "invalid_request_error", "param": None,
                                           "code": None}}, status_code=400)  # fmt: skip
        self.requests.append(body)
        r = self._reply(body)
        usage = {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
        base = {"id": "chatcmpl-agent", "created": int(time.time()), "model": body["model"]}
        finish = "tool_calls" if r["tool_calls"] else "stop"
        if not body.get("stream"):
            msg = {"role": "assistant", **{k: v for k, v in r.items() if v is not None}}
            choice = {"index": 0, "message": msg, "finish_reason": finish}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        def chunk(delta: dict[str, Any], fin: str | None = None, **extra: Any) -> bytes:
            c = {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": fin}], **extra}  # fmt: skip
            return b"data: " + json.dumps(c).encode() + b"\n\n"

        async def gen() -> Any:
            yield chunk({"role": "assistant", "content": ""})
            if r.get("reasoning_content"):
                yield chunk({"reasoning_content": r["reasoning_content"]})
            for i, w in enumerate((r["content"] or "").split(" ") if r["content"] else []):
                yield chunk({"content": w if i == 0 else " " + w})
            for i, tc in enumerate(r["tool_calls"] or []):
                yield chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                             "function": {"name": tc["function"]["name"], "arguments": ""}}]})  # fmt: skip
                a = tc["function"]["arguments"]
                for j in range(0, len(a), 7):
                    yield chunk({"tool_calls": [{"index": i, "function": {"arguments": a[j : j + 7]}}]})
            yield chunk({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield (
                    b"data: "
                    + json.dumps({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}).encode()
                    + b"\n\n"
                )
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    def app(self) -> Starlette:
        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [{"id": "agent-fast", "object": "model"}]})

        return Starlette(
            routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]), Route("/v1/models", models)]
        )


class RecordingProxy:
    """Forwards to `target` as is; `log` holds (method, path, status) per request and
    `bodies` each request's body."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.log: list[tuple[str, str, int]] = []
        self.bodies: list[bytes] = []
        self.client: httpx.AsyncClient | None = None

    def refused(self) -> list[tuple[str, str, int]]:
        return [e for e in self.log if e[2] >= 400]

    async def forward(self, request: Request) -> Response:
        if self.client is None:  # made on the proxy's own event loop
            self.client = httpx.AsyncClient(timeout=httpx.Timeout(120.0))
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in ("host", "content-length")]
        url = self.target + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        body = await request.body()
        req = self.client.build_request(request.method, url, headers=headers, content=body)
        resp = await self.client.send(req, stream=True)
        self.log.append((request.method, request.url.path, resp.status_code))
        self.bodies.append(body)
        drop = {"content-length", "transfer-encoding", "content-encoding", "connection"}
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in drop}
        return StreamingResponse(resp.aiter_raw(), status_code=resp.status_code, headers=out_headers,
                                 background=BackgroundTask(resp.aclose))  # fmt: skip

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST", "DELETE", "HEAD"])])


CONFIG = """
models:
  fast: {{provider: openai, model: agent-fast, api_base: "{base}", logprobs: false, timeout: 60}}
  reasoning: {{provider: openai, model: agent-think, api_base: "{base}", reasoning: true, logprobs: false, timeout: 60}}
routes:
  auto: {{fast: fast, reasoning: reasoning, default: fast}}
  fast: {{pin: fast}}
  reasoning: {{pin: reasoning}}
classifier: {{enabled: false}}
selfref: {{enabled: false}}
cache: {{enabled: false}}
"""


@dataclass
class AgentGateway:
    url: str  # the proxy in front of thinkgate (no /v1)
    upstream: AgentUpstream
    proxy: RecordingProxy


@contextmanager
def agent_gateway(workdir: Path, log_dir: Path) -> Iterator[AgentGateway]:
    up = AgentUpstream(workdir)
    up_server = _Server(up.app())
    up_server.start()
    try:
        cfg = log_dir / "thinkgate.yaml"
        cfg.write_text(CONFIG.format(base=f"http://127.0.0.1:{up_server.port}/v1"))
        with serve(log_dir, cfg, timeout=120) as url:
            proxy = RecordingProxy(url)
            p_server = _Server(proxy.app())
            p_server.start()
            try:
                yield AgentGateway(f"http://127.0.0.1:{p_server.port}", up, proxy)
            finally:
                p_server.stop()
    finally:
        up_server.stop()


def setup_home(tmp: Path) -> tuple[Path, Path]:
    """A temp HOME and a temp working directory holding notes.txt."""
    home, work = tmp / "home", tmp / "work"
    home.mkdir()
    work.mkdir()
    (work / "notes.txt").write_text(NOTE + "\n")
    return home, work
