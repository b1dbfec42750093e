"""The work after a reply: write the answer to the cache, count the decision
in the metrics and append it to the decision log. Writes run as background
tasks so the client never waits for them; `drain` awaits them at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from router import tracing
from router.pipeline import timings
from router.pipeline.parts import Cache, DecisionSink, MetricsSink
from router.types import ChatRequest, Decision

log = logging.getLogger("thinkgate.pipeline")


class Recorder:
    def __init__(
        self, *, cache: Cache | None = None, log_sink: DecisionSink | None = None, metrics: MetricsSink | None = None,
        learner: Any = None, slow_ms: float | None = None,
    ) -> None:
        self.slow_ms = slow_ms  # decisions.slow_request_ms: slower requests log a warning
        self.learner = learner  # router.learning.shadow.Learner: offered every finished answer
        self.cache = cache
        self.log_sink = log_sink
        self.metrics = metrics
        self._background: set[asyncio.Task[Any]] = set()

    def store(self, req: ChatRequest, embedding: Any, completion: dict[str, Any], chunks: list[dict[str, Any]] | None, d: Decision) -> None:
        if self.learner is not None:
            self.learner.answered(req, d, completion, embedding)
        if self.cache is None or req.controls.cache.no_store or d.route == "cache":
            return
        completion = {k: v for k, v in completion.items() if k != "thinkgate"}
        self._spawn(self.cache.put(req, embedding, completion, chunks, str(d.route)))

    def hold_fast(self, d: Decision, completion: dict[str, Any]) -> None:
        """Self-Ref escalates: the discarded fast answer, for learning to grade."""
        if self.learner is not None:
            self.learner.hold_fast(d, completion)

    def after(self, d: Decision) -> Any:
        """What the app runs once the response is sent (None: nothing). Async, so
        Starlette runs it on the event loop, not on a worker thread."""
        if self.learner is None:
            return None
        learner = self.learner

        async def start() -> None:
            learner.start(d)  # only spawns the job; the connection is not held for it

        return start

    def finish(self, d: Decision, t0: float | None = None) -> None:
        """Record the finished decision; `t0` (the request's arrival, perf_counter)
        closes its timings: total_ms and the steps that add up to it."""
        if t0 is not None:
            timings.close(d, t0, self.slow_ms)
        tracing.record_decision(d)  # on the request's trace, when tracing is on
        if self.metrics is not None:
            try:
                self.metrics.observe(d)
            except Exception:  # metrics must never fail a request
                log.exception("metrics observe failed")
        if self.log_sink is not None:
            self._spawn(self.log_sink.append(d))

    def _spawn(self, coro: Any) -> None:
        # Storing and logging happen after the reply; keep a reference so the
        # task is not garbage-collected, and never let a failure escape.
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed: %r", task.exception())

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
