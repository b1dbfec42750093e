"""A real `thinkgate serve` for Gemini clients: its upstreams are strict scripted
OpenAI-compatible servers (router.upstreams.strict_server: any field the OpenAI chat
API does not define is a 400), and a recording proxy stands in front of it, so a
test sees the status of every request the client made.

The scripted model calls a tool when tools are offered and the last turn is the
user's (the tool the test names, with the arguments it names), answers text that
quotes the tool's output after a tool result, and answers JSON that fits the schema
when the client asks for JSON (Gemini CLI's side calls do). What the upstreams
accepted is kept, so a test asserts the tool's output really came back through
thinkgate.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from router.upstreams.strict_server import StrictOpenAIServer, _example
from tests.e2e.serve import free_port, serve

# Gemini clients name Google's models: the test config routes each name it may send
GEMINI_NAMES = (
    "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-pro-preview", "gemini-3-flash-preview",
    "gemini-3.1-pro-preview", "gemini-3.1-flash-lite-preview", "gemini-3.1-flash-lite", "gemini-3.5-flash",
    "gemini-3.5-flash-lite",
)  # fmt: skip
CONFIG = """
models:
  fast: {{provider: openai, model: scripted-fast, api_base: "{fast}", logprobs: false, timeout: 30}}
  reasoning: {{provider: openai, model: scripted-think, api_base: "{think}", reasoning: true, logprobs: false, timeout: 30}}
routes:
  auto: {{fast: fast, reasoning: reasoning, default: fast}}
  thinker: {{pin: reasoning}}
{names}
classifier: {{enabled: false}}
selfref: {{enabled: false}}
cache: {{semantic: false}}
auth: {{keys: [{{key: "{key}", tenant: gemini-tests}}]}}
"""
KEY = "tg-gemini-test-key"


class ScriptedModel(StrictOpenAIServer):
    """The strict server, answering as the module docstring says."""

    def __init__(self, *, reasoning: str | None = None) -> None:
        super().__init__(reasoning=reasoning)
        self.tool_name: str | None = None  # the tool to call; None: the first offered
        self.tool_args: dict[str, Any] = {}  # by parameter name; those the tool lacks are left out

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        message = super()._message(body)
        tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
        fmt = body.get("response_format") or {}
        if message.get("tool_calls"):
            fn = next((f for f in tools if f["name"] == self.tool_name), tools[0])
            params = fn.get("parameters") or {}
            args = _example(params) or {}
            if fn["name"] == self.tool_name:  # the test's arguments, those the tool's schema names
                args.update({k: v for k, v in self.tool_args.items() if k in (params.get("properties") or {})})
            message["tool_calls"][0]["function"] = {"name": fn["name"], "arguments": json.dumps(args)}
        elif fmt.get("type") == "json_schema" and body["messages"][-1].get("role") != "tool":
            message["content"] = json.dumps(_example(fmt["json_schema"].get("schema") or {}))
        return message

    def saw(self, text: str) -> bool:
        """Whether some accepted request carried `text` in a tool message."""
        return any(
            m.get("role") == "tool" and text in json.dumps(m.get("content"))
            for b in self.accepted
            for m in b.get("messages") or []
        )


@dataclass
class Recorded:
    method: str
    path: str
    status: int
    dropped: str | None = None  # x-thinkgate-dropped: what thinkgate accepted and left out


@dataclass
class GeminiGateway:
    url: str  # the proxy in front of thinkgate: what clients are given
    fast: ScriptedModel
    think: ScriptedModel
    key: str = KEY
    requests: list[Recorded] = field(default_factory=list)

    def refused(self) -> list[Recorded]:
        return [r for r in self.requests if r.status >= 400]

    def rejected_upstream(self) -> list[str]:
        return self.fast.rejected + self.think.rejected

    def script(self, tool_name: str | None, **tool_args: Any) -> None:
        for m in (self.fast, self.think):
            m.tool_name, m.tool_args = tool_name, tool_args


def _proxy(target: str, log: list[Recorded]) -> Starlette:
    client = httpx.AsyncClient(base_url=target, timeout=120)

    async def forward(request: Request) -> StreamingResponse:
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in (b"host", b"content-length")]
        req = client.build_request(
            request.method, request.url.path, params=request.query_params, headers=headers, content=await request.body()
        )
        resp = await client.send(req, stream=True)
        log.append(Recorded(request.method, request.url.path, resp.status_code, resp.headers.get("x-thinkgate-dropped")))
        hop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        out = {k: v for k, v in resp.headers.items() if k.lower() not in hop}
        return StreamingResponse(resp.aiter_raw(), status_code=resp.status_code, headers=out, background=BackgroundTask(resp.aclose))

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


class _Loop:
    """An event loop in a thread, for the in-process servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def gemini_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GeminiGateway]:
    loop = _Loop()
    fast, think = ScriptedModel(), ScriptedModel(reasoning="reasoning_content")
    loop.run(fast.start())
    loop.run(think.start())
    d = tmp_path_factory.mktemp("geminigw")
    names = "\n".join(f"  {n}: {{fast: fast, reasoning: reasoning, default: fast}}" for n in GEMINI_NAMES)
    cfg = d / "thinkgate.yaml"
    cfg.write_text(CONFIG.format(fast=fast.api_base, think=think.api_base, names=names, key=KEY))
    try:
        with serve(d, cfg, timeout=120, ready_path="/healthz") as url:
            log: list[Recorded] = []
            port = free_port()
            server = uvicorn.Server(uvicorn.Config(_proxy(url, log), host="127.0.0.1", port=port, log_level="warning",
                                                   lifespan="off"))  # fmt: skip
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started and thread.is_alive():
                threading.Event().wait(0.02)
            try:
                yield GeminiGateway(f"http://127.0.0.1:{port}", fast, think, requests=log)
            finally:
                server.should_exit = True
                thread.join(timeout=10)
    finally:
        loop.run(fast.stop())
        loop.run(think.stop())
        loop.close()


def write_secret(tmp: Path, text: str) -> Path:
    p = tmp / "notes.txt"
    p.write_text(text + "\n")
    return p
