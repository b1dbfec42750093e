"""The shapes around a `Pipeline`: one small interface per part it is given
(embedder, classifier, cache, decision log, metrics), the `Reply` it hands the
app, and the `_Target` (route + upstream) its steps pass between them.

Kept apart from the pipeline so its helper modules can name these types
without importing the pipeline itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from router.types import ChatRequest, Decision, Route
from router.upstreams.base import Upstream


class Embedder(Protocol):
    async def embed(self, messages: list[dict[str, Any]], then: Any = None) -> Any:
        """The routing vector; with `then`, (vector, then(vector)), `then` run off the
        event loop (router/embedding/batcher.py runs it in the batch's worker job)."""


class Classifier(Protocol):
    threshold: float

    def predict(self, messages: list[dict[str, Any]], embedding: Any) -> float: ...


class Cache(Protocol):
    def needs_embedding(self, req: ChatRequest) -> bool: ...
    async def get(self, req: ChatRequest, embedding: Any, *, exact: bool = True) -> Any: ...
    async def put(self, req: ChatRequest, embedding: Any, response: dict[str, Any], chunks: list[dict[str, Any]] | None, route: str) -> None: ...


class DecisionSink(Protocol):
    async def append(self, decision: Decision) -> None: ...


class MetricsSink(Protocol):
    def observe(self, decision: Decision) -> None: ...


@dataclass
class Reply:
    """What the app sends: a JSON body, or a chunk stream. Headers come from
    `decision`, whose routing fields are final before the first byte is sent."""

    decision: Decision
    body: dict[str, Any] | None = None
    chunks: AsyncIterator[dict[str, Any]] | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    after: Any = None  # a callable the app runs once the response is sent (learning's shadow job)


@dataclass
class _Target:
    route: Route
    upstream: Upstream
    model_name: str
