"""An OpenAI-compatible HTTP server on loopback with injectable faults, for fault
tests, the soak run and benchmarks (the HTTP twin of `FakeUpstream`).

It speaks just enough HTTP/1.1 (keep-alive, chunked SSE) over raw asyncio
streams so that faults are real socket behaviour: a *reset* is a TCP RST
(SO_LINGER 0), a *hang* never answers, a *stall* sends the first chunk of a
stream and then nothing, a *cut* resets the socket mid-stream.

    python -m router.upstreams.fake_server --port 9100 --fail-rate 0.3
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Faults:
    fail_rate: float = 0.0  # answer HTTP 500
    reset_rate: float = 0.0  # read the request, then reset the connection
    hang_rate: float = 0.0  # read the request, never answer
    stall_rate: float = 0.0  # streams: first chunk, then silence
    cut_rate: float = 0.0  # streams: first chunk, then a reset
    delay_s: float = 0.0  # before every answer
    seed: int | None = None
    chunk_delay_s: float = 0.0  # streams: between chunks (a slow generation)


@dataclass
class Stats:
    requests: int = 0
    ok: int = 0
    failed: int = 0
    resets: int = 0
    hangs: int = 0
    stalls: int = 0
    cuts: int = 0
    aborted: int = 0  # streams the client (thinkgate) closed before the end
    by_path: dict[str, int] = field(default_factory=dict)


class FakeOpenAIServer:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, faults: Faults | None = None, words: int = 8, reply: str | None = None
    ) -> None:
        self.reply = reply  # a fixed answer (e.g. a judge's "[[A]]") instead of "w0 w1 ..."
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.words = words
        self.stats = Stats()
        self.traceparents: collections.deque[str | None] = collections.deque(maxlen=256)  # recent W3C traceparents
        self._rng = random.Random(self.faults.seed)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> FakeOpenAIServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                keep = headers.get("connection", "").lower() != "close"
                if method == "POST":
                    self.traceparents.append(headers.get("traceparent"))
                if not await self._answer(method, path.split("?")[0], body, writer):
                    return
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # the server is stopping; asyncio would log a cancelled handler
            return
        finally:
            self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    def _reset(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _answer(self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter) -> bool:
        """Write one response; False when the connection is gone."""
        s, f = self.stats, self.faults
        s.requests += 1
        s.by_path[path] = s.by_path.get(path, 0) + 1
        if method == "GET" and path in ("/v1/models", "/models", "/health"):
            await _send_json(writer, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
            return True
        if method == "POST" and path in ("/v1/embeddings", "/embeddings"):
            status, out = _embeddings(raw)
            await _send_json(writer, status, out)
            return True
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
            await _send_json(writer, 404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})
            return True
        try:
            body = json.loads(raw or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            await _send_json(writer, 400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return True
        if f.delay_s:
            await asyncio.sleep(f.delay_s)
        if self._roll(f.reset_rate):
            s.resets += 1
            self._reset(writer)
            return False
        if self._roll(f.hang_rate):
            s.hangs += 1
            await asyncio.Event().wait()  # until the client gives up or the server stops
        if self._roll(f.fail_rate):
            s.failed += 1
            await _send_json(writer, 500, {"error": {"message": "injected failure", "type": "server_error"}})
            return True
        chat = path.endswith("chat/completions")
        if body.get("stream"):
            return await self._stream(body, chat, writer)
        s.ok += 1
        await _send_json(writer, 200, self._completion(body, chat))
        return True

    def _text(self) -> list[str]:
        if self.reply is not None:
            return [("" if i == 0 else " ") + w for i, w in enumerate(self.reply.split(" "))]
        return [("" if i == 0 else " ") + f"w{i}" for i in range(self.words)]

    def _completion(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        text = "".join(self._text())
        n = len(self._text())
        usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
        model = str(body.get("model") or "fake-model")
        if chat:
            lp = None
            if body.get("logprobs"):
                lp = {
                    "content": [
                        {"token": t, "logprob": -0.05, "bytes": list(t.encode()), "top_logprobs": []}
                        for t in self._text()
                    ]
                }
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": lp,
            }
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
        }

    async def _stream(self, body: dict[str, Any], chat: bool, writer: asyncio.StreamWriter) -> bool:
        s, f = self.stats, self.faults
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )
        model = str(body.get("model") or "fake-model")
        now = int(time.time())

        def event(choice: dict[str, Any], **extra: Any) -> bytes:
            obj = "chat.completion.chunk" if chat else "text_completion"
            data = {"id": "chatcmpl-fake", "object": obj, "created": now, "model": model, "choices": [choice], **extra}
            return _chunked(b"data: " + json.dumps(data).encode() + b"\n\n")

        def piece(tok: str) -> dict[str, Any]:
            if chat:
                return {"index": 0, "delta": {"content": tok}, "finish_reason": None, "logprobs": None}
            return {"index": 0, "text": tok, "finish_reason": None, "logprobs": None}

        tokens = self._text()
        writer.write(event(piece(tokens[0])))
        await writer.drain()
        if self._roll(f.stall_rate):
            s.stalls += 1
            await asyncio.Event().wait()
        if self._roll(f.cut_rate):
            s.cuts += 1
            self._reset(writer)
            return False
        try:
            for tok in tokens[1:]:
                if f.chunk_delay_s:
                    await asyncio.sleep(f.chunk_delay_s)
                    writer.write(event(piece(tok)))
                    await writer.drain()
                else:
                    writer.write(event(piece(tok)))
        except ConnectionError:
            s.aborted += 1
            return False
        last = {"index": 0, "finish_reason": "stop", "logprobs": None, **({"delta": {}} if chat else {"text": ""})}
        usage = {"prompt_tokens": 10, "completion_tokens": len(tokens), "total_tokens": 10 + len(tokens)}
        writer.write(event(last, usage=usage))
        writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        s.ok += 1
        return True


def _embeddings(raw: bytes) -> tuple[int, dict[str, Any]]:
    """OpenAI's embeddings API, strictly: unknown fields are refused. Vectors are a
    deterministic hash of each input (8 values, or `dimensions`), L2-normalised."""
    import base64
    import hashlib
    import math

    def bad(msg: str) -> tuple[int, dict[str, Any]]:
        return 400, {"error": {"message": msg, "type": "invalid_request_error", "param": None, "code": None}}

    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return bad("invalid JSON")
    if not isinstance(body, dict) or "input" not in body or "model" not in body:
        return bad("'model' and 'input' are required")
    extra = set(body) - {"model", "input", "encoding_format", "dimensions", "user"}
    if extra:
        return bad(f"Unrecognized request argument supplied: {min(extra)}")
    inp = body["input"]
    items = [inp] if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)) else inp
    dims = int(body.get("dimensions") or 8)
    data, tokens = [], 0
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += len(text.split()) if isinstance(item, str) else len(item)
        digest = hashlib.sha256(text.encode()).digest()
        vec = [(digest[j % 32] - 127.5) / 127.5 for j in range(dims)]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        vec = [v / norm for v in vec]
        emb: Any = vec
        if body.get("encoding_format") == "base64":
            emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return 200, {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _send_json(writer: asyncio.StreamWriter, status: int, obj: Any) -> None:
    data = json.dumps(obj).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}.get(status, "")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--words", type=int, default=8)
    p.add_argument("--reply", help="answer this text instead of 'w0 w1 ...'")
    for name in ("fail-rate", "reset-rate", "hang-rate", "stall-rate", "cut-rate", "delay-s", "chunk-delay-s"):
        p.add_argument(f"--{name}", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args(argv)
    faults = Faults(
        a.fail_rate, a.reset_rate, a.hang_rate, a.stall_rate, a.cut_rate, a.delay_s, a.seed, a.chunk_delay_s
    )

    async def run() -> None:
        server = await FakeOpenAIServer(a.host, a.port, faults=faults, words=a.words, reply=a.reply).start()
        print(f"listening {server.api_base}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
