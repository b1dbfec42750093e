"""The seven steps of one request (ARCHITECTURE.md), as plain async code:
parse (done by the app) → cache → embed → difficulty → fast + Self-Ref or
reasoning + DEER → respond → store and log.

Every part is passed in; a missing part (no classifier, no cache) just skips
its step, so the same pipeline runs unit tests with fakes and production.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from router import errors
from router.config import RouteSettings, Settings
from router.encoders import sentence
from router.protocol import assemble, completion_text, estimate_tokens, message_text, to_chunks
from router.types import ChatRequest, Decision, DeerStats, Route
from router.upstreams.base import CallContext, Upstream

log = logging.getLogger("thinkgate.pipeline")


class Embedder(Protocol):
    async def embed(self, messages: list[dict[str, Any]]) -> Any: ...


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


@dataclass
class _Target:
    route: Route
    upstream: Upstream
    model_name: str


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        upstreams: dict[str, Upstream],
        *,
        embedder: Embedder | None = None,
        classifier: Classifier | None = None,
        cache: Cache | None = None,
        log_sink: DecisionSink | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.embedder = embedder
        self.classifier = classifier
        self.cache = cache
        self.log_sink = log_sink
        self.metrics = metrics
        self._background: set[asyncio.Task[Any]] = set()

    # -- aliases -----------------------------------------------------------------

    def aliases(self) -> list[str]:
        return list(self.settings.routes) + [m for m in self.settings.models if m not in self.settings.routes]

    def _route_settings(self, alias: str) -> RouteSettings:
        routes = self.settings.routes
        if alias in routes:
            return routes[alias]
        if alias in self.settings.models:  # a concrete model requested by name is pinned
            return RouteSettings(pin=alias, fallback=False, selfref=False)
        for name, ms in self.settings.models.items():
            if ms.model == alias:
                return RouteSettings(pin=name, fallback=False, selfref=False)
        raise errors.ModelNotFound(
            f"The model '{alias}' does not exist; available: {', '.join(self.aliases())}", param="model"
        )

    def _target(self, rs: RouteSettings, route: Route) -> _Target:
        name = rs.fast if route == "fast" else rs.reasoning
        return _Target(route, self.upstreams[name], name)

    # -- the request ---------------------------------------------------------------

    async def handle(self, req: ChatRequest) -> Reply:
        t0 = time.perf_counter()
        caller = req.caller
        d = Decision(tenant=caller.tenant, alias=req.alias, endpoint=req.endpoint, stream=req.stream)
        if self.settings.decisions.store_prompt:
            d.prompt = message_text(req.messages[-1].get("content"))[: self.settings.decisions.prompt_chars]
        try:
            rs = self._route_settings(req.alias)
            if caller.aliases is not None and req.alias not in caller.aliases:
                raise errors.Forbidden(f"this API key may not use the model '{req.alias}'", param="model", code="model_not_allowed")
            reply = await self._handle(req, rs, d, t0)
        except errors.ThinkgateError as e:
            d.status, d.error = e.status, f"{type(e).__name__}: {e.message}"[:300]
            d.total_ms = (time.perf_counter() - t0) * 1000
            self._finish(d)
            raise
        if reply.body is not None:
            d.total_ms = (time.perf_counter() - t0) * 1000
            self._finish(d)
        return reply

    async def _handle(self, req: ChatRequest, rs: RouteSettings, d: Decision, t0: float) -> Reply:
        # 2. cache: exact first (no embedding needed), semantic after embedding
        vector = embedding = None
        cache_on = self.cache is not None
        d.cache = "miss" if cache_on else "off"
        if cache_on and getattr(self.cache, "state", "up") == "down":
            d.cache = "bypass"  # Redis is down: requests skip the cache and still succeed
        if cache_on and not req.controls.cache.no_cache:
            hit = await self.cache.get(req, None)  # type: ignore[union-attr]
            if hit is not None:
                return self._cache_reply(req, d, hit, t0)

        # 3-4. embed once: the classifier reads the whole routing vector, the
        # semantic cache and the decision log its sentence embedding
        forced = req.controls.force_route
        wants_classifier = rs.pin is None and forced is None and self.classifier is not None
        wants_semantic = cache_on and not req.controls.cache.no_cache and self.cache.needs_embedding(req)  # type: ignore[union-attr]
        if self.embedder is not None and (wants_classifier or wants_semantic):
            vector = await self.embedder.embed(req.messages)
            embedding = sentence(vector)
            if self.settings.decisions.store_embedding:
                d.embedding = [round(float(x), 5) for x in embedding]
            if wants_semantic:
                hit = await self.cache.get(req, embedding, exact=False)  # type: ignore[union-attr]
                if hit is not None:
                    return self._cache_reply(req, d, hit, t0)

        route, pinned = self._decide(req, rs, d, vector)
        d.routing_ms = (time.perf_counter() - t0) * 1000

        # 5-6. call the route (Self-Ref on fast, DEER inside the reasoning upstream)
        if pinned is not None:
            target = _Target(route, self.upstreams[pinned], pinned)
        else:
            target = self._target(rs, route)
        selfref = (
            route == "fast"
            and pinned is None
            and rs.selfref
            and self.settings.selfref.enabled
            and self.settings.models[target.model_name].logprobs
        )
        if req.stream:
            return await self._stream(req, rs, d, target, selfref, embedding, t0)
        body = await self._complete(req, rs, d, target, selfref)
        self._store(req, embedding, body, None, d)
        if req.controls.debug:
            body["thinkgate"] = d.to_dict()
        return Reply(d, body=body)

    def _decide(self, req: ChatRequest, rs: RouteSettings, d: Decision, vector: Any) -> tuple[Route, str | None]:
        forced = req.controls.force_route
        if rs.pin is not None:
            route: Route = "reasoning" if self.settings.models[rs.pin].reasoning else "fast"
            d.route, d.reason = route, "alias"
            return route, rs.pin
        if forced is not None:
            d.route, d.reason = forced, "forced"
            return forced, None
        if self.classifier is not None and vector is not None:
            p = float(self.classifier.predict(req.messages, vector))
            threshold = rs.threshold if rs.threshold is not None else float(self.classifier.threshold)
            d.difficulty, d.threshold = p, threshold
            route = "reasoning" if p >= threshold else "fast"
            d.route, d.reason = route, "classifier"
            return route, None
        d.route, d.reason = rs.default, "default"
        return rs.default, None

    # -- non-streaming -----------------------------------------------------------------

    async def _call(self, req: ChatRequest, d: Decision, target: _Target, **overrides: Any) -> dict[str, Any]:
        ctx = CallContext(controls=req.controls)
        if self.settings.models[target.model_name].reasoning:
            ctx.deer = DeerStats()
        t = time.perf_counter()
        try:
            return await target.upstream.complete(req.upstream_body(target.upstream.model, **overrides), ctx)
        finally:
            d.upstream_ms += (time.perf_counter() - t) * 1000
            if ctx.deer is not None:
                d.deer = ctx.deer

    async def _complete(self, req: ChatRequest, rs: RouteSettings, d: Decision, target: _Target, selfref: bool) -> dict[str, Any]:
        try:
            if selfref:
                body = await self._call(req, d, target, **self._logprob_args(req))
                if self._escalate(req, d, body):
                    self._charge_discarded(d, target, body)
                    target = self._target(rs, "reasoning")
                    body = await self._call(req, d, target)
                else:
                    self._strip_logprobs(req, body)
            else:
                body = await self._call(req, d, target)
        except errors.UpstreamError as e:
            other = self._fallback(rs, target, e)
            if other is None:
                raise
            d.fallback_from, d.reason = target.model_name, "fallback"
            target = other
            body = await self._call(req, d, target)
        self._account(req, d, target, body)
        return body

    def _fallback(self, rs: RouteSettings, failed: _Target, e: errors.UpstreamError) -> _Target | None:
        if not rs.fallback or rs.pin is not None or not (e.retryable or isinstance(e, errors.UpstreamAuth)):
            return None
        other: Route = "fast" if failed.route == "reasoning" else "reasoning"
        target = self._target(rs, other)
        if target.model_name == failed.model_name:
            return None
        log.warning("upstream %s failed (%s); falling back to %s", failed.model_name, e.code, target.model_name)
        return target

    # -- Self-Ref -------------------------------------------------------------------------

    def _logprob_args(self, req: ChatRequest) -> dict[str, Any]:
        k = self.settings.selfref.top_logprobs
        if req.endpoint == "chat":
            return {"logprobs": True, "top_logprobs": max(k, int(req.body.get("top_logprobs") or 0))}
        return {"logprobs": max(k, int(req.body.get("logprobs") or 0), 1)}

    def _escalate(self, req: ChatRequest, d: Decision, completion: dict[str, Any]) -> bool:
        from policies import selfref

        cfg = self.settings.selfref
        choice = (completion.get("choices") or [{}])[0]
        conf = selfref.confidence(choice, cfg.mode, quantile=cfg.quantile)
        threshold = req.controls.selfref_threshold if req.controls.selfref_threshold is not None else cfg.threshold
        d.confidence, d.selfref_threshold, d.selfref_mode = conf, threshold, cfg.mode
        escalate = selfref.should_escalate(conf, threshold, cfg.on_missing_logprobs)
        if cfg.mode == "confidence_token" and not escalate:
            _rewrite_text(choice, selfref.strip_confidence_token)
        if escalate:
            d.escalated, d.route, d.reason = True, "reasoning", "escalated"
        return escalate

    def _strip_logprobs(self, req: ChatRequest, completion: dict[str, Any]) -> None:
        client_wants = req.body.get("logprobs")
        for c in completion.get("choices") or []:
            if not client_wants:
                c["logprobs"] = None
            elif req.endpoint == "chat" and c.get("logprobs"):
                k = int(req.body.get("top_logprobs") or 0)
                for tok in c["logprobs"].get("content") or []:
                    tok["top_logprobs"] = (tok.get("top_logprobs") or [])[:k]

    # -- accounting ----------------------------------------------------------------------

    def _account(self, req: ChatRequest, d: Decision, target: _Target, body: dict[str, Any]) -> None:
        usage = body.get("usage") or {}
        pt = usage.get("prompt_tokens")
        ct = usage.get("completion_tokens")
        if pt is None or ct is None:
            pt = pt if pt is not None else sum(estimate_tokens(message_text(m.get("content"))) for m in req.messages)
            ct = ct if ct is not None else estimate_tokens(completion_text(body))
            body["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        d.prompt_tokens, d.completion_tokens = int(pt), int(ct)
        d.upstream, d.upstream_model = target.model_name, target.upstream.model
        d.route = target.route
        d.cost += self._price(target.model_name, int(pt), int(ct))
        rs = self.settings.routes.get(req.alias)
        reasoning_name = rs.reasoning if rs and rs.pin is None else None
        if reasoning_name and reasoning_name in self.settings.models:
            rp = self.settings.models[reasoning_name].price
            # what the always-reasoning baseline would have paid for the same tokens
            # (a lower bound: a reasoning model also writes its thinking)
            d.baseline_cost = (pt * rp.input + ct * rp.output) / 1e6
        else:
            d.baseline_cost = d.cost

    def _price(self, model_name: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.settings.models[model_name].price
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1e6

    def _charge_discarded(self, d: Decision, target: _Target, completion: dict[str, Any]) -> None:
        """An escalated fast answer was paid for even though the client never sees it."""
        usage = completion.get("usage") or {}
        d.cost += self._price(target.model_name, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    # -- streaming ----------------------------------------------------------------------

    async def _stream(
        self, req: ChatRequest, rs: RouteSettings, d: Decision, target: _Target, selfref: bool, embedding: Any, t0: float
    ) -> Reply:
        if selfref:
            # The client must never see a fast answer that is then replaced, so the
            # fast answer is buffered until its confidence is known.
            try:
                buffered = await self._collect(req, d, target, **self._logprob_args(req))
            except errors.UpstreamError as e:
                other = self._fallback(rs, target, e)
                if other is None:
                    raise
                d.fallback_from, d.reason, target = target.model_name, "fallback", other
            else:
                completion = assemble(buffered)
                if not self._escalate(req, d, completion):
                    self._strip_chunk_logprobs(req, buffered)
                    if self.settings.selfref.mode == "confidence_token":
                        buffered = to_chunks(completion)
                    self._account(req, d, target, completion)
                    return Reply(d, chunks=self._replay(req, d, buffered, embedding, completion, t0))
                self._charge_discarded(d, target, completion)
                target = self._target(rs, "reasoning")

        ctx = CallContext(controls=req.controls)
        if self.settings.models[target.model_name].reasoning:
            ctx.deer = DeerStats()
            d.deer = ctx.deer
        # headers go out before the stream ends: name the model that answers now
        d.upstream, d.upstream_model = target.model_name, target.upstream.model
        gen = target.upstream.stream(req.upstream_body(target.upstream.model), ctx)
        t = time.perf_counter()
        try:
            first = await gen.__anext__()
        except StopAsyncIteration:
            raise errors.UpstreamUnavailable(f"upstream {target.model_name} sent an empty stream", upstream=target.model_name) from None
        except errors.UpstreamError as e:
            other = self._fallback(rs, target, e)
            if other is None:
                raise
            d.fallback_from, d.reason, target = target.model_name, "fallback", other
            d.route, d.upstream, d.upstream_model = target.route, target.model_name, target.upstream.model
            ctx = CallContext(controls=req.controls)
            if self.settings.models[target.model_name].reasoning:
                ctx.deer = DeerStats()
                d.deer = ctx.deer
            gen = target.upstream.stream(req.upstream_body(target.upstream.model), ctx)
            first = await gen.__anext__()
        d.upstream_ms += (time.perf_counter() - t) * 1000
        return Reply(d, chunks=self._relay(req, d, target, first, gen, embedding, t0, t))

    async def _collect(self, req: ChatRequest, d: Decision, target: _Target, **overrides: Any) -> list[dict[str, Any]]:
        t = time.perf_counter()
        try:
            return [c async for c in target.upstream.stream(req.upstream_body(target.upstream.model, **overrides), CallContext(controls=req.controls))]
        finally:
            d.upstream_ms += (time.perf_counter() - t) * 1000

    def _strip_chunk_logprobs(self, req: ChatRequest, chunks: list[dict[str, Any]]) -> None:
        if req.body.get("logprobs"):
            return
        for ch in chunks:
            for c in ch.get("choices") or []:
                if "logprobs" in c:
                    c["logprobs"] = None

    async def _replay(
        self, req: ChatRequest, d: Decision, chunks: list[dict[str, Any]], embedding: Any, completion: dict[str, Any], t0: float
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            for ch in chunks:
                out = self._client_chunk(req, ch)
                if out is not None:
                    yield out
            tail = self._usage_chunk(req, d, chunks[0] if chunks else {})
            if tail is not None:
                yield tail
            self._store(req, embedding, completion, chunks, d)
        finally:
            d.total_ms = (time.perf_counter() - t0) * 1000
            self._finish(d)

    async def _relay(
        self,
        req: ChatRequest,
        d: Decision,
        target: _Target,
        first: dict[str, Any],
        gen: AsyncIterator[dict[str, Any]],
        embedding: Any,
        t0: float,
        t_up: float,
    ) -> AsyncIterator[dict[str, Any]]:
        seen: list[dict[str, Any]] = [first]
        complete = False
        try:
            out = self._client_chunk(req, first)
            if out is not None:
                yield out
            async for ch in gen:
                seen.append(ch)
                out = self._client_chunk(req, ch)
                if out is not None:
                    yield out
            complete = True
            completion = assemble(seen)
            self._account(req, d, target, completion)
            tail = self._usage_chunk(req, d, first)
            if tail is not None:
                yield tail
            # only a stream that ran to its end is stored
            self._store(req, embedding, completion, seen, d)
        except errors.ThinkgateError as e:
            d.status, d.error = e.status, f"{type(e).__name__}: {e.message}"[:300]
            yield {"error": e.body()["error"]}
        finally:
            if not complete:
                await _aclose(gen)
                if d.error is None:
                    d.error, d.status = "client disconnected", 499
            d.upstream_ms = (time.perf_counter() - t_up) * 1000
            d.total_ms = (time.perf_counter() - t0) * 1000
            self._finish(d)

    def _client_chunk(self, req: ChatRequest, ch: dict[str, Any]) -> dict[str, Any] | None:
        # usage goes out once, in its own final chunk, and only when asked for
        if "usage" in ch:
            ch = {k: v for k, v in ch.items() if k != "usage"}
            if not ch.get("choices"):
                return None
        return ch

    def _usage_chunk(self, req: ChatRequest, d: Decision, first: dict[str, Any]) -> dict[str, Any] | None:
        if not req.include_usage and not req.controls.debug:
            return None
        obj = "chat.completion.chunk" if req.endpoint == "chat" else "text_completion"
        chunk: dict[str, Any] = {"id": first.get("id"), "object": obj, "created": first.get("created"), "model": first.get("model"), "choices": []}
        if req.include_usage:
            chunk["usage"] = {
                "prompt_tokens": d.prompt_tokens,
                "completion_tokens": d.completion_tokens,
                "total_tokens": d.prompt_tokens + d.completion_tokens,
            }
        if req.controls.debug:
            chunk["thinkgate"] = d.to_dict()
        return chunk

    # -- cache -----------------------------------------------------------------------------

    def _cache_reply(self, req: ChatRequest, d: Decision, hit: Any, t0: float) -> Reply:
        d.route, d.reason, d.cache, d.similarity = "cache", "cache", hit.kind, hit.similarity
        response = hit.response
        usage = response.get("usage") or {}
        d.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        d.completion_tokens = int(usage.get("completion_tokens") or 0)
        d.upstream_model = response.get("model")
        d.routing_ms = (time.perf_counter() - t0) * 1000
        if not req.stream:
            body = dict(response)
            if req.controls.debug:
                body["thinkgate"] = d.to_dict()
            return Reply(d, body=body)
        chunks = hit.chunks or to_chunks(response)

        async def replay() -> AsyncIterator[dict[str, Any]]:
            try:
                for ch in chunks:
                    out = self._client_chunk(req, ch)
                    if out is not None:
                        yield out
                tail = self._usage_chunk(req, d, chunks[0])
                if tail is not None:
                    yield tail
            finally:
                d.total_ms = (time.perf_counter() - t0) * 1000
                self._finish(d)

        return Reply(d, chunks=replay())

    def _store(self, req: ChatRequest, embedding: Any, completion: dict[str, Any], chunks: list[dict[str, Any]] | None, d: Decision) -> None:
        if self.cache is None or req.controls.cache.no_store or d.route == "cache":
            return
        completion = {k: v for k, v in completion.items() if k != "thinkgate"}
        self._spawn(self.cache.put(req, embedding, completion, chunks, str(d.route)))

    # -- record -----------------------------------------------------------------------------

    def _finish(self, d: Decision) -> None:
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


def _rewrite_text(choice: dict[str, Any], fn: Any) -> None:
    if "message" in choice and isinstance((choice.get("message") or {}).get("content"), str):
        choice["message"]["content"] = fn(choice["message"]["content"])
    elif isinstance(choice.get("text"), str):
        choice["text"] = fn(choice["text"])


async def _aclose(gen: AsyncIterator[Any]) -> None:
    close = getattr(gen, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # the stream is being abandoned; its error no longer matters
            log.debug("error while closing an upstream stream", exc_info=True)
