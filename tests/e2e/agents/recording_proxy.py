"""A pass-through HTTP proxy on loopback that records the status of every response,
put between an agent CLI and `thinkgate serve`: the check that no request of an agent's
session was refused must see the requests the front end refuses before the pipeline
(those leave no decision record), and a client that retries without a feature after a
400 must not pass. Bodies stream through untouched, as they come."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.serve import free_port

_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive", "host"}


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    body: bytes  # the response body when it is an error (4xx/5xx), for the failure message


class RecordingProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.port = free_port()
        self.exchanges: list[Exchange] = []
        self._client: httpx.AsyncClient | None = None
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT", "DELETE", "HEAD"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def refused(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.status >= 400]

    async def _forward(self, request: Request) -> Response:
        if self._client is None:  # made on the server's own event loop
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(300, connect=10))
        url = f"{self.target}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        up = await self._client.send(
            self._client.build_request(request.method, url, headers=headers, content=await request.body()), stream=True
        )
        out_headers = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
        if up.status_code >= 400:
            body = await up.aread()
            await up.aclose()
            self.exchanges.append(Exchange(request.method, request.url.path, up.status_code, body))
            return Response(body, status_code=up.status_code, headers=out_headers)
        self.exchanges.append(Exchange(request.method, request.url.path, up.status_code, b""))

        async def relay() -> Any:
            async for chunk in up.aiter_raw():
                yield chunk

        return StreamingResponse(relay(), status_code=up.status_code, headers=out_headers, background=BackgroundTask(up.aclose))

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the recording proxy did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
