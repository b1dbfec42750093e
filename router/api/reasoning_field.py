"""The name under which a chat reply carries its thinking.

Inside thinkgate it is always `reasoning_content` (router.upstreams.hygiene makes
it so). Most SDKs read that name (DeepSeek's); clients written for vLLM >= 0.16
or OpenRouter read `reasoning`. The per-request control wins over the route's
setting, which wins over the server's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from router.config import Settings
from router.settings.aliases import route_key
from router.types import ChatRequest

DEFAULT = "reasoning_content"


def wanted(settings: Settings, req: ChatRequest) -> str:
    if req.controls.reasoning_field:
        return req.controls.reasoning_field
    key = route_key(settings.routes, settings.models, req.alias)
    rs = settings.routes[key] if key is not None else None
    if rs is not None and rs.reasoning_field:
        return rs.reasoning_field
    return settings.server.reasoning_field


def _rename(d: Any) -> None:
    if isinstance(d, dict) and "reasoning_content" in d:
        d["reasoning"] = d.pop("reasoning_content")


def rename_body(body: dict[str, Any]) -> dict[str, Any]:
    """message.reasoning_content -> reasoning, on copies (a cache hit shares its objects)."""
    choices = body.get("choices") or []
    if not any("reasoning_content" in (c.get("message") or {}) for c in choices if isinstance(c, dict)):
        return body
    out = {**body, "choices": [{**c, "message": dict(c.get("message") or {})} for c in choices]}
    for c in out["choices"]:
        _rename(c["message"])
    return out


async def rename_chunks(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    try:
        async for ch in chunks:
            choices = ch.get("choices")
            if choices and any("reasoning_content" in (c.get("delta") or {}) for c in choices):
                # chunks may be a cached list's own objects: rename on a copy
                ch = {**ch, "choices": [{**c, "delta": dict(c.get("delta") or {})} for c in choices]}
                for c in ch["choices"]:
                    _rename(c["delta"])
            yield ch
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
