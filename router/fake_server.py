"""An OpenAI-compatible server that answers instantly, for benchmarks and
load tests: `python -m router.fake_server --port 9001`.

Pure ASGI (no routing framework) so that it is never the bottleneck of a
benchmark that measures the gateway in front of it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from starlette.types import Receive, Scope, Send

_CHAT = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "model": "fake-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The answer is 4."},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
}
_TEXT = {
    "id": "cmpl-fake",
    "object": "text_completion",
    "model": "fake-model",
    "choices": [{"index": 0, "text": " 4.", "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
_MODELS = {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]}


def _stream_events(created: int) -> list[bytes]:
    out = []
    for piece in ["The", " answer", " is", " 4."]:
        c = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": "fake-model",
             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        out.append(b"data: " + json.dumps(c).encode() + b"\n\n")
    last = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": "fake-model",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}}
    out.append(b"data: " + json.dumps(last).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    path = scope["path"]
    payload: Any
    if path.endswith("/models"):
        payload = _MODELS
    else:
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        if req.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
            for ev in _stream_events(int(time.time())):
                await send({"type": "http.response.body", "body": ev, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        payload = {**(_TEXT if path.endswith("/completions") and "chat" not in path else _CHAT), "created": int(time.time())}
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    a = p.parse_args()
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
