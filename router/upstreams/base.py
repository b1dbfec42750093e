"""The upstream seam: one interface every model behind thinkgate implements.

Bodies and results are OpenAI JSON (dicts): a chat body has "messages", a
completions body has "prompt". Keeping the wire shape means fields thinkgate
does not interpret (tools, response_format, seed, ...) pass through untouched.
Every implementation maps its own failures to `router.errors.UpstreamError`
subclasses, so callers never see httpx or litellm exception types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from router.types import Controls, DeerStats


@dataclass
class CallContext:
    """Per-call state an upstream may read (controls) and fill (stats)."""

    controls: Controls = field(default_factory=Controls)
    timeout: float | None = None  # seconds; None: the upstream's configured timeout
    deer: DeerStats | None = None  # filled by reasoning (DEER) upstreams
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Upstream(Protocol):
    name: str  # the configured name (e.g. "fast", "reasoning")
    model: str  # the concrete model id reported to clients

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Return a `chat.completion` or `text_completion` object."""
        ...

    def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        """Yield `chat.completion.chunk` / `text_completion` chunk objects.

        Closing the iterator early (client gone) must cancel the upstream request.
        """
        ...

    async def ready(self) -> dict[str, Any]:
        """Cheap reachability check for /readyz: {"ok": bool, ...details}."""
        ...

    async def close(self) -> None: ...
