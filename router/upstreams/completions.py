"""A thin raw-prompt `/v1/completions` client (vLLM, llama.cpp's server) for
drivers that continue a rendered prompt themselves, such as DEER: streamed
events come back as `Piece`s, failures as `router.errors`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from router import errors, tracing
from router.upstreams.openai_compat import _error_message, map_transport_error


@dataclass
class Piece:
    """One streamed completions event."""

    text: str
    tokens: int
    finish_reason: str | None = None
    stop_reason: Any = None
    has_stop_reason: bool = False  # vLLM reports which stop string fired; llama.cpp does not
    usage: dict[str, Any] | None = None
    at: float = 0.0  # perf_counter() when it arrived


def _n_tokens(choice: dict[str, Any], text: str) -> int:
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("tokens"), list):
        return len(lp["tokens"])
    # one event per generated token on vLLM (default stream interval) and llama.cpp
    return 1 if text else 0


class Completions:
    def __init__(self, client: httpx.AsyncClient, api_base: str, upstream: str) -> None:
        self.client = client
        self.url = f"{api_base.rstrip('/')}/completions"
        self.upstream = upstream

    async def stream(self, payload: dict[str, Any], timeout: httpx.Timeout) -> AsyncIterator[Piece]:
        payload = {**payload, "stream": True}
        try:
            with tracing.client("openai", str(payload.get("model", "")), payload, self.upstream) as call:
                async with self.client.stream("POST", self.url, json=payload, timeout=timeout, headers=call.headers) as resp:
                    if resp.status_code >= 400:
                        text = (await resp.aread()).decode(errors="replace")
                        raise errors.from_status(
                            resp.status_code, _error_message(text, resp.status_code), upstream=self.upstream
                        )
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        try:
                            event = json.loads(data)
                        except ValueError:
                            raise errors.UpstreamUnavailable(
                                f"upstream {self.upstream} sent a malformed event", upstream=self.upstream
                            ) from None
                        if not isinstance(event, dict) or "error" in event:
                            raise errors.UpstreamUnavailable(_error_message(data, 500), upstream=self.upstream)
                        usage = event.get("usage") if isinstance(event.get("usage"), dict) else None
                        if usage:
                            call.result({"usage": usage})
                        for choice in event.get("choices") or []:
                            text = choice.get("text") or ""
                            yield Piece(
                                text=text,
                                tokens=_n_tokens(choice, text),
                                finish_reason=choice.get("finish_reason"),
                                stop_reason=choice.get("stop_reason"),
                                has_stop_reason="stop_reason" in choice,
                                usage=usage,
                                at=time.perf_counter(),
                            )
                        if usage and not event.get("choices"):
                            yield Piece(text="", tokens=0, usage=usage, at=time.perf_counter())
        except httpx.HTTPError as e:
            raise map_transport_error(e, self.upstream) from None

    async def create(self, payload: dict[str, Any], timeout: httpx.Timeout) -> dict[str, Any]:
        payload = {**payload, "stream": False}
        with tracing.client("openai", str(payload.get("model", "")), payload, self.upstream) as call:
            data = await self._create(payload, timeout, call.headers)
            call.result(data)
        return data

    async def _create(self, payload: dict[str, Any], timeout: httpx.Timeout, headers: dict[str, str] | None) -> dict[str, Any]:
        try:
            resp = await self.client.post(self.url, json=payload, timeout=timeout, headers=headers)
        except httpx.HTTPError as e:
            raise map_transport_error(e, self.upstream) from None
        if resp.status_code >= 400:
            raise errors.from_status(
                resp.status_code, _error_message(resp.text, resp.status_code), upstream=self.upstream
            )
        try:
            data = resp.json()
        except ValueError:
            raise errors.UpstreamUnavailable(
                f"upstream {self.upstream} returned invalid JSON", upstream=self.upstream
            ) from None
        if not isinstance(data, dict) or not data.get("choices"):
            raise errors.UpstreamUnavailable(f"upstream {self.upstream} returned no choices", upstream=self.upstream)
        return data
