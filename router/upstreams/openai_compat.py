"""A direct client for any OpenAI-compatible server (vLLM, llama.cpp's server,
a local fake). It is the fast path: no provider translation, one pooled
connection set, errors mapped once at this boundary.

It speaks aiohttp: measured side by side on loopback, an aiohttp request costs
about half of an httpx one, and this client sits on every request's path.
(`map_transport_error` keeps mapping httpx errors for modules that use httpx.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

from router import errors, tracing
from router.upstreams.base import CallContext
from router.upstreams.hygiene import normalize_chunk, normalize_reply


def map_transport_error(exc: Exception, upstream: str) -> errors.UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return errors.UpstreamTimeout(f"upstream {upstream} timed out", upstream=upstream)
    if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return errors.UpstreamUnavailable(f"upstream {upstream} is unreachable ({type(exc).__name__})", upstream=upstream)
    return errors.UpstreamUnavailable(f"upstream {upstream} failed ({type(exc).__name__})", upstream=upstream)


def _error_message(resp_text: str, status: int) -> str:
    try:
        err = json.loads(resp_text).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
    except (ValueError, AttributeError):
        pass
    return f"upstream answered HTTP {status}"


def map_aiohttp_error(exc: BaseException, upstream: str) -> errors.UpstreamError:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return errors.UpstreamTimeout(f"upstream {upstream} timed out", upstream=upstream)
    return errors.UpstreamUnavailable(f"upstream {upstream} is unreachable ({type(exc).__name__})", upstream=upstream)


class OpenAICompatUpstream:
    def __init__(
        self,
        name: str,
        model: str,
        api_base: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_connections: int = 512,
    ) -> None:
        self.name = name
        self.model = model
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        # created on first use: an aiohttp session belongs to the running loop
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300),
                json_serialize=lambda o: json.dumps(o, separators=(",", ":")),
            )
        return self._session

    def _url(self, body: dict[str, Any]) -> str:
        return f"{self.api_base}/chat/completions" if "messages" in body else f"{self.api_base}/completions"

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        body = {**body, "stream": False}
        body.pop("stream_options", None)
        t = ctx.timeout or self.timeout
        timeout = aiohttp.ClientTimeout(total=t, connect=min(t, self.connect_timeout))
        try:
            async with self.session().post(self._url(body), json=body, timeout=timeout, headers=tracing.headers()) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise map_aiohttp_error(e, self.name) from None
        if status >= 400:
            raise errors.from_status(status, _error_message(raw.decode(errors="replace"), status), upstream=self.name)
        try:
            data = json.loads(raw)
        except ValueError:
            raise errors.UpstreamUnavailable(f"upstream {self.name} returned invalid JSON", upstream=self.name) from None
        if not isinstance(data, dict) or not data.get("choices"):
            raise errors.UpstreamUnavailable(f"upstream {self.name} returned no choices", upstream=self.name)
        return normalize_reply(data)

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        body = {**body, "stream": True}
        if "messages" in body:
            # ask for usage so thinkgate can report it whatever the client asked
            body["stream_options"] = {"include_usage": True}
        t = ctx.timeout or self.timeout
        # a stream may run long: bound the wait for each piece, not the whole
        timeout = aiohttp.ClientTimeout(total=None, connect=min(t, self.connect_timeout), sock_read=t)
        finished = False
        try:
            async with self.session().post(self._url(body), json=body, timeout=timeout, headers=tracing.headers()) as resp:
                if resp.status >= 400:
                    text = (await resp.read()).decode(errors="replace")
                    raise errors.from_status(resp.status, _error_message(text, resp.status), upstream=self.name)
                async for raw_line in resp.content:
                    line = raw_line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise errors.UpstreamUnavailable(f"upstream {self.name} sent a malformed event", upstream=self.name) from None
                    if isinstance(chunk, dict) and "error" in chunk:
                        raise errors.UpstreamUnavailable(_error_message(data.decode(errors="replace"), 500), upstream=self.name)
                    finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or [])
                    yield normalize_chunk(chunk)
            if not finished:  # closed with neither [DONE] nor a finish_reason: an incomplete answer
                raise errors.UpstreamUnavailable(f"upstream {self.name} ended the stream early", upstream=self.name)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise map_aiohttp_error(e, self.name) from None

    async def ready(self) -> dict[str, Any]:
        try:
            async with self.session().get(f"{self.api_base}/models", timeout=aiohttp.ClientTimeout(total=2.0)) as resp:
                return {"ok": resp.status < 500, "status": resp.status, "base": self.api_base}
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return {"ok": False, "error": type(e).__name__, "base": self.api_base}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
