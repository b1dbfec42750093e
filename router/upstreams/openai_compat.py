"""A direct httpx client for any OpenAI-compatible server (vLLM, llama.cpp's
server, a local fake). It is the fast path: no provider translation, one
pooled connection set, errors mapped once at this boundary."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from router import errors
from router.upstreams.base import CallContext


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
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    def _url(self, body: dict[str, Any]) -> str:
        return f"{self.api_base}/chat/completions" if "messages" in body else f"{self.api_base}/completions"

    def _timeout(self, ctx: CallContext) -> httpx.Timeout:
        t = ctx.timeout or self.timeout
        return httpx.Timeout(t, connect=min(t, 5.0))

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        body = {**body, "stream": False}
        body.pop("stream_options", None)
        try:
            resp = await self._client.post(self._url(body), json=body, timeout=self._timeout(ctx))
        except httpx.HTTPError as e:
            raise map_transport_error(e, self.name) from None
        if resp.status_code >= 400:
            raise errors.from_status(resp.status_code, _error_message(resp.text, resp.status_code), upstream=self.name)
        try:
            data = resp.json()
        except ValueError:
            raise errors.UpstreamUnavailable(f"upstream {self.name} returned invalid JSON", upstream=self.name) from None
        if not isinstance(data, dict) or not data.get("choices"):
            raise errors.UpstreamUnavailable(f"upstream {self.name} returned no choices", upstream=self.name)
        return data

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        body = {**body, "stream": True}
        if "messages" in body:
            # ask for usage so thinkgate can report it whatever the client asked
            body["stream_options"] = {"include_usage": True}
        try:
            async with self._client.stream("POST", self._url(body), json=body, timeout=self._timeout(ctx)) as resp:
                if resp.status_code >= 400:
                    text = (await resp.aread()).decode(errors="replace")
                    raise errors.from_status(resp.status_code, _error_message(text, resp.status_code), upstream=self.name)
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise errors.UpstreamUnavailable(f"upstream {self.name} sent a malformed event", upstream=self.name) from None
                    if isinstance(chunk, dict) and "error" in chunk:
                        raise errors.UpstreamUnavailable(_error_message(data, 500), upstream=self.name)
                    yield chunk
        except httpx.HTTPError as e:
            raise map_transport_error(e, self.name) from None

    async def ready(self) -> dict[str, Any]:
        try:
            resp = await self._client.get(f"{self.api_base}/models", timeout=2.0)
            return {"ok": resp.status_code < 500, "status": resp.status_code, "base": self.api_base}
        except httpx.HTTPError as e:
            return {"ok": False, "error": type(e).__name__, "base": self.api_base}

    async def close(self) -> None:
        await self._client.aclose()
