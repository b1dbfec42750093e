"""Remote embedding models behind /v1/embeddings: an OpenAI-compatible server's
`/embeddings`, or any litellm embedding provider. Each returns OpenAI's embeddings
response with float vectors (the API layer encodes base64 itself, so every
backend answers the client the same way); failures become router.errors
UpstreamError subclasses at this seam, as for the chat upstreams."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from router import errors
from router.config import EmbeddingModelSettings
from router.upstreams.openai_compat import _error_message, map_transport_error


class RemoteEmbeddings(Protocol):
    name: str

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """`body`: OpenAI's embeddings request (input, optional dimensions, user)."""
        ...

    async def close(self) -> None: ...


def _check(out: Any, n: int, name: str) -> dict[str, Any]:
    """An upstream answer is trusted only in OpenAI's shape, one float vector per input."""
    data = out.get("data") if isinstance(out, dict) else None
    ok = (
        isinstance(data, list)
        and len(data) == n
        and all(isinstance(d, dict) and isinstance(d.get("embedding"), list) for d in data)
    )
    if not ok:
        raise errors.UpstreamUnavailable(f"upstream {name} sent a malformed embeddings response", upstream=name)
    return out


def _count(body: dict[str, Any]) -> int:
    inp = body.get("input")
    if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)):
        return 1
    return len(inp) if isinstance(inp, list) else 1


class OpenAIEmbeddings:
    def __init__(self, name: str, ms: EmbeddingModelSettings) -> None:
        assert ms.api_base
        self.name = name
        self.model = ms.model
        self.url = ms.api_base.rstrip("/") + "/embeddings"
        headers = {"Authorization": f"Bearer {ms.api_key}"} if ms.api_key else {}
        self._client = httpx.AsyncClient(timeout=ms.timeout, headers=headers)
        self._extra = dict(ms.extra)

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = {**self._extra, **body, "model": self.model, "encoding_format": "float"}
        try:
            r = await self._client.post(self.url, json=payload)
        except httpx.HTTPError as e:
            raise map_transport_error(e, self.name) from None
        if r.status_code != 200:
            raise errors.from_status(
                r.status_code, f"upstream {self.name}: {_error_message(r.text, r.status_code)}", upstream=self.name
            )
        try:
            out = r.json()
        except ValueError:
            out = None
        return _check(out, _count(body), self.name)

    async def close(self) -> None:
        await self._client.aclose()


class LiteLLMEmbeddings:
    def __init__(self, name: str, ms: EmbeddingModelSettings) -> None:
        self.name = name
        self.model = ms.model
        self._kw: dict[str, Any] = {**ms.extra, "timeout": ms.timeout}
        if ms.api_base:
            self._kw["api_base"] = ms.api_base
        if ms.api_key:
            self._kw["api_key"] = ms.api_key

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        from router.upstreams.litellm_client import _dump, _lib, _map

        lib = _lib()
        try:
            resp = await lib.aembedding(**{**body, **self._kw, "model": self.model, "encoding_format": "float"})
        except Exception as e:  # the seam: every litellm failure becomes one of ours
            raise _map(e, self.name) from None
        out = _dump(resp)
        out["data"] = [_dump(d) for d in out.get("data") or []]
        return _check(out, _count(body), self.name)

    async def close(self) -> None:
        return None


def build_remote(name: str, ms: EmbeddingModelSettings) -> RemoteEmbeddings:
    if ms.provider == "openai":
        return OpenAIEmbeddings(name, ms)
    if ms.provider == "litellm":
        return LiteLLMEmbeddings(name, ms)
    raise ValueError(f"embedding model {name}: provider {ms.provider!r} is not remote")
