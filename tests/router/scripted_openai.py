"""A scripted OpenAI-compatible completions server for DEER driver tests.

It plays a reasoning model on a real loopback port (Starlette + uvicorn):
- thinking requests (streams whose prompt has no think-close tag) stream the
  script's thinking pieces, continuing from wherever the prompt left off, and
  honour `max_tokens` and `stop` (vLLM-like: the stop string is withheld and,
  with `stop_reason=True`, named in the final event);
- probe requests (non-streaming, with logprobs) answer with tokens and
  logprobs chosen by the test, or fail / stall when told to;
- answer requests (streams whose prompt holds the close tag) stream the
  scripted answer.
Every stream records whether it ran to the end or the client went away.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

CLOSE = "</think>"


@dataclass
class ProbeReply:
    probs: list[float] = field(default_factory=lambda: [0.5, 0.99, 0.99])
    tokens: list[str] | None = None  # default "{", "4", "}" ...
    status: int = 200
    delay: float = 0.0
    text_suffix: str = ""  # e.g. CLOSE for the Qwen3 rule
    stop_reason: Any = "absent"


@dataclass
class Script:
    thinking: list[str]
    answer: list[str] = field(default_factory=lambda: [" The", " answer", " is", " \\boxed{4}", "."])
    probes: list[ProbeReply] | Callable[[int], ProbeReply] = field(default_factory=list)
    token_delay: float = 0.01
    stop_reason: bool = True  # report which stop string fired (vLLM); False: llama.cpp-like
    prompt_tokens: int = 7


@dataclass
class StreamLog:
    kind: str
    prompt: str
    payload: dict[str, Any]
    sent: int = 0
    completed: bool = False
    disconnected: bool = False


class ScriptedServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.base_prompt: str | None = None
        self.requests: list[dict[str, Any]] = []
        self.traceparents: list[str | None] = []  # each completions request's W3C traceparent
        self.streams: list[StreamLog] = []
        self.probe_prompts: list[str] = []
        self.tokenize_calls = 0
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def thinking_streams(self) -> list[StreamLog]:
        return [s for s in self.streams if s.kind == "thinking"]

    def answer_streams(self) -> list[StreamLog]:
        return [s for s in self.streams if s.kind == "answer"]

    # -- endpoints -----------------------------------------------------------

    async def completions(self, request: Request) -> Any:
        payload = await request.json()
        self.requests.append(payload)
        self.traceparents.append(request.headers.get("traceparent"))
        prompt: str = payload["prompt"]
        if not payload.get("stream"):
            return await self._probe(prompt)
        if CLOSE in prompt:
            return self._stream(request, "answer", prompt, payload, list(self.script.answer), None)
        if self.base_prompt is None:
            self.base_prompt = prompt
        so_far = prompt[len(self.base_prompt) :]
        pieces = self.script.thinking
        i, acc = 0, ""
        while acc != so_far and i < len(pieces):
            acc += pieces[i]
            i += 1
        assert acc == so_far, f"continuation does not match the script: {so_far!r}"
        return self._stream(request, "thinking", prompt, payload, pieces[i:], payload.get("stop"))

    async def _probe(self, prompt: str) -> Any:
        self.probe_prompts.append(prompt)
        n = len(self.probe_prompts)
        probes = self.script.probes
        reply = (
            probes(n)
            if callable(probes)
            else (probes[n - 1] if n <= len(probes) else ProbeReply(probs=[0.5, 0.1, 0.1]))
        )
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return JSONResponse({"error": {"message": "probe failed"}}, status_code=reply.status)
        tokens = reply.tokens or (["{", "4", "}"] + ["x"] * max(0, len(reply.probs) - 3))[: len(reply.probs)]
        choice: dict[str, Any] = {
            "index": 0,
            "text": "".join(tokens) + reply.text_suffix,
            "logprobs": {"tokens": tokens, "token_logprobs": [math.log(p) for p in reply.probs]},
            "finish_reason": "stop",
        }
        if reply.stop_reason != "absent":
            choice["stop_reason"] = reply.stop_reason
        return JSONResponse(
            {"id": "p", "object": "text_completion", "choices": [choice], "usage": {"completion_tokens": len(tokens)}}
        )

    def _stream(
        self, request: Request, kind: str, prompt: str, payload: dict[str, Any], pieces: list[str], stop: Any
    ) -> StreamingResponse:
        rec = StreamLog(kind, prompt, payload)
        self.streams.append(rec)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        max_tokens = int(payload.get("max_tokens") or 10**9)

        def event(text: str, finish: str | None = None, stop_reason: Any = "absent") -> str:
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            if finish and self.script.stop_reason and stop_reason != "absent":
                choice["stop_reason"] = stop_reason
            return "data: " + json.dumps({"id": "c", "object": "text_completion", "choices": [choice]}) + "\n\n"

        async def gen() -> Any:
            try:
                for n, piece in enumerate(pieces):
                    if n >= max_tokens:
                        yield event("", "length")
                        break
                    hit = next((s for s in stops if s in piece), None)
                    if hit is not None:
                        yield event("", "stop", hit)
                        break
                    await asyncio.sleep(self.script.token_delay)
                    if await request.is_disconnected():
                        rec.disconnected = True
                        return
                    yield event(piece)
                    rec.sent += 1
                else:
                    yield event("", "stop", None)
                if payload.get("stream_options", {}).get("include_usage"):
                    usage = {"prompt_tokens": self.script.prompt_tokens, "completion_tokens": rec.sent}
                    yield "data: " + json.dumps({"id": "c", "choices": [], "usage": usage}) + "\n\n"
                yield "data: [DONE]\n\n"
                rec.completed = True
            except asyncio.CancelledError:
                rec.disconnected = True
                raise

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def tokenize(self, request: Request) -> Any:
        body = await request.json()
        self.tokenize_calls += 1
        assert body.get("add_generation_prompt") is True
        text = "".join(f"<|{m['role']}|>{m['content']}\n" for m in body["messages"]) + "<|assistant|>"
        return JSONResponse({"count": len(text), "tokens": [ord(c) for c in text], "max_model_len": 4096})

    async def detokenize(self, request: Request) -> Any:
        body = await request.json()
        return JSONResponse({"prompt": "".join(chr(t) for t in body["tokens"])})

    async def models(self, request: Request) -> Any:
        return JSONResponse({"object": "list", "data": [{"id": "scripted"}]})

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = Starlette(
            routes=[
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.models),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/detokenize", self.detokenize, methods=["POST"]),
            ]
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await asyncio.wait_for(self._task, 10)
