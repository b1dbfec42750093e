"""The seven steps of one request (ARCHITECTURE.md), as plain async code:
parse (done by the app) → cache → embed → difficulty → fast + Self-Ref or
reasoning + DEER → respond → store and log.

Every part is passed in; a missing part (no classifier, no cache) just skips
its step, so the same pipeline runs unit tests with fakes and production.

This module holds the routing and the order of the steps; the steps' own
work lives beside it: `escalation` (Self-Ref), `accounting` (tokens and cost),
`streaming` (the chunk stream to the client), `recorder` (cache write, metrics
and decision log, after the reply), `parts` (the parts' interfaces,
`Reply`), `replies` (the completion and chunk shapes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from policies.features import message_text
from router import errors, tracing
from router.config import RouteSettings, Settings
from router.settings import aliases
from router.embedding.encoders import sentence
from router.cache.agent_loops import LoopStore, build_loop_store
from router.cache.conversations import RouteStore, build_route_store
from router.learning.slot import snapshot
from router.pipeline import agent_loop, conversation, effort, fanout, output_cap, prefix, rules, streaming, timings
from router.pipeline.accounting import account, charge_discarded
from router.pipeline.escalation import escalate, logprob_args, strip_chunk_logprobs, strip_logprobs
from router.pipeline.parts import Cache, Classifier, DecisionSink, Embedder, MetricsSink, Reply, _Target
from router.pipeline.recorder import Recorder
from router.pipeline.replies import assemble, to_chunks
from router.types import ChatRequest, Decision, DeerStats, Route
from router.upstreams.base import CallContext, Upstream
from router.upstreams import user_field
from router.upstreams.hygiene import clean_body

log = logging.getLogger("thinkgate.pipeline")


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
        learner: Any = None,
        conversations: RouteStore | None = None,
        loops: LoopStore | None = None,
    ) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.embedder = embedder
        self.classifier = classifier
        self.cache = cache
        self.recorder = Recorder(
            cache=cache, log_sink=log_sink, metrics=metrics, learner=learner, slow_ms=settings.decisions.slow_request_ms
        )
        # routing.conversation: where each conversation's route lives between turns
        self.conversations = conversations or build_route_store(
            settings.routing, settings.cache.redis_url if settings.cache.enabled else None
        )
        # routing.agent.in_loop: where each agent loop's route and model live between turns
        self.loops = loops or build_loop_store(settings.routing, settings.cache.redis_url if settings.cache.enabled else None)

    # -- aliases -----------------------------------------------------------------

    def aliases(self) -> list[str]:
        return list(self.settings.routes) + [m for m in self.settings.models if m not in self.settings.routes]

    def _route_settings(self, alias: str) -> tuple[RouteSettings, str | None]:
        """The route serving `alias`, and the `routes:` pattern that matched it (None
        for an exact alias or a model named directly)."""
        routes = self.settings.routes
        if alias in routes:
            return routes[alias], None
        if alias in self.settings.models:  # a concrete model requested by name is pinned
            return RouteSettings(pin=alias, fallback=False, selfref=False), None
        for name, ms in self.settings.models.items():
            if ms.model == alias:
                return RouteSettings(pin=name, fallback=False, selfref=False), None
        pattern = aliases.match(routes, alias)  # `claude-*`, `*`: names agents send that no one listed
        if pattern is not None:
            return routes[pattern], pattern
        raise errors.ModelNotFound(
            f"The model '{alias}' does not exist; available: {', '.join(self.aliases())}", param="model"
        )

    def _target(self, rs: RouteSettings, route: Route) -> _Target:
        name = rs.fast if route == "fast" else rs.reasoning
        return _Target(route, self.upstreams[name], name)

    def _body(self, req: ChatRequest, target: _Target, **overrides: Any) -> dict[str, Any]:
        # message hygiene at the upstream seam: only fields the model's API defines
        ms = self.settings.models[target.model_name]
        body = clean_body(req.upstream_body(target.upstream.model, **overrides), ms.accepts_reasoning_history)
        user_field.apply(body, self.settings.server.upstream_user, self.settings.server.upstream_user_key)
        # the model's own output limit (models.NAME.max_output_tokens): clamp or refuse
        note = output_cap.apply(body, ms, target.model_name)
        if note is not None and note not in (req.clamped or ""):
            # after limits.max_tokens' own clamp, if any: both steps are recorded
            req.clamped = f"{req.clamped}; {note}" if req.clamped else note
        return body

    def _native(self, target: _Target) -> bool:
        return self.settings.models[target.model_name].native_n

    # -- the request ---------------------------------------------------------------

    async def handle(self, req: ChatRequest) -> Reply:
        # the request's clock starts at its parse (done by the front end), the first step
        t0 = time.perf_counter() - req.parse_ms / 1000
        caller = req.caller
        d = Decision(tenant=caller.tenant, alias=req.alias, endpoint=req.endpoint, stream=req.stream, n=fanout.n_of(req.body))
        d.api = req.api or ("completions" if req.endpoint == "completion" else "chat")
        if req.parse_ms:
            d.steps["parse"] = req.parse_ms
        d.artifact = snapshot(self.classifier)[1]
        d.dropped = list(req.dropped) or None
        if caller.meter is not None:  # the rate limiter charges this decision's tokens (router/types.py Meter)
            caller.meter.decisions.append(d)
        if self.settings.decisions.store_prompt:
            d.prompt = message_text(req.messages[-1].get("content"))[: self.settings.decisions.prompt_chars]
        try:
            rs, d.alias_pattern = self._route_settings(req.alias)
            # a key allowed a pattern (`claude-*`) may use every name it serves
            if caller.aliases is not None and req.alias not in caller.aliases and d.alias_pattern not in caller.aliases:
                raise errors.Forbidden(f"this API key may not use the model '{req.alias}'", param="model", code="model_not_allowed")
            reply = await self._handle(req, rs, d, t0)
        except errors.ThinkgateError as e:
            d.status, d.error = e.status, f"{type(e).__name__}: {e.message}"[:300]
            d.clamped = req.clamped
            self.recorder.finish(d, t0)
            raise
        d.clamped = req.clamped
        if reply.body is not None:
            self.recorder.finish(d, t0)
            if req.controls.debug:  # after finish: the record with its total and steps
                reply.body["thinkgate"] = d.to_dict()
        reply.after = self.recorder.after(d)
        return reply

    async def _handle(self, req: ChatRequest, rs: RouteSettings, d: Decision, t0: float) -> Reply:
        # 1b. operator rules (before the cache: a DEER setting is part of the cache key)
        # (on a worker thread when there are rules: their patterns may read a 4 MB prompt)
        effect = await asyncio.to_thread(rules.apply, self.settings.rules, req, d) if rs.pin is None and self.settings.rules else None
        forced = req.controls.force_route
        ruled = effect is not None and effect.route is not None
        # 1c. agent loops: the turn's type, its session's cache scope, the loop's route
        at = await agent_loop.begin(
            self.loops, self.settings.routing.agent, req, d, obeyed=rs.pin is not None or forced is not None or ruled
        )
        # 2. cache: exact first (no embedding needed), semantic after embedding
        vector = embedding = None
        cache_on = self.cache is not None and not at.skips_cache
        d.cache = "miss" if cache_on else "off"
        if cache_on and getattr(self.cache, "state", "up") == "down":
            d.cache = "bypass"  # Redis is down: requests skip the cache and still succeed
        if cache_on and not req.controls.cache.no_cache:
            with timings.step(d, "cache", {"thinkgate.cache.lookup": "exact"}) as sp:
                hit = await self.cache.get(req, None)  # type: ignore[union-attr]
                sp.set("thinkgate.cache.hit", hit is not None)
            if hit is not None:
                return self._cache_reply(req, d, hit, t0)

        # 3-4. embed once: the classifier reads the whole routing vector, the
        # semantic cache and the decision log its sentence embedding
        # one artifact per request: a reload meanwhile does not mix two (router/learning/slot.py)
        snap = snapshot(self.classifier)
        # a turn its loop holds needs no classifier; an agent turn no semantic lookup
        wants_classifier = rs.pin is None and forced is None and not ruled and not at.held and snap[0] is not None
        wants_semantic = cache_on and not at.agent and not req.controls.cache.no_cache and self.cache.needs_embedding(req)  # type: ignore[union-attr]
        # a classifier on its own encoder (classifier.encoder: static) needs no MiniLM pass:
        # with the semantic cache off and no embedding to log, that pass is skipped
        reads_vector = wants_classifier and getattr(snap[0], "reads_vector", True)
        scored: float | None = None  # P, when the embedder's worker computed it with the vector
        if self.embedder is not None and (reads_vector or wants_semantic or (wants_classifier and self.settings.decisions.store_embedding)):
            with timings.step(d, "embed"):
                try:
                    if reads_vector:
                        # the classifier runs on the embedding worker, in the batch's job: no
                        # second thread handoff (features, lexical hashing and the head stay off
                        # the event loop, so a huge prompt never stalls the other requests)
                        vector, scored = await self.embedder.embed(at.messages, then=partial(snap[0].predict, at.messages))
                    else:
                        vector = await self.embedder.embed(at.messages)
                except errors.EmbeddingFailed:
                    # degrade: no classifier, no semantic cache; the route's default answers
                    log.warning("embedding failed; routing without it")
                    wants_semantic = False
            embedding = sentence(vector) if vector is not None else None
            if embedding is not None and self.settings.decisions.store_embedding:
                d.embedding = [round(float(x), 5) for x in embedding]
            if wants_semantic:
                with timings.step(d, "cache", {"thinkgate.cache.lookup": "semantic"}) as sp:
                    hit = await self.cache.get(req, embedding, exact=False)  # type: ignore[union-attr]
                    sp.set("thinkgate.cache.hit", hit is not None)
                if hit is not None:
                    return self._cache_reply(req, d, hit, t0)

        with timings.step(d, "classify") as sp:
            route, pinned = await self._decide(req, rs, d, vector, effect, snap, at.messages, scored)
            held = at.hold(d)
            if held is not None:
                route = held[0]
            sp.set("thinkgate.route", route)
            sp.set("thinkgate.difficulty", d.difficulty)
        route, turn = await conversation.begin(self.conversations, self.settings.routing, req, d, route, pinned)
        effort.apply_effort(self.settings.routing, req, d.difficulty)
        tiered = agent_loop.relay_tier(self.settings.routing.agent, at, req, d, route)
        d.routing_ms = (time.perf_counter() - t0) * 1000

        # 5-6. call the route (Self-Ref on fast, DEER inside the reasoning upstream)
        if pinned is not None:
            target = _Target(route, self.upstreams[pinned], pinned)
        elif held is not None and tiered == route and held[1] in self.upstreams:
            target = _Target(route, self.upstreams[held[1]], held[1])  # the loop's own model
        else:
            route = tiered
            target = self._target(rs, route)
        selfref = (
            route == "fast"
            and pinned is None
            and rs.selfref
            and self.settings.selfref.enabled
            and self.settings.models[target.model_name].logprobs
        )
        if req.stream:
            reply = await self._stream(req, rs, d, target, selfref, embedding, t0)
            if turn is not None:  # the route is final once the stream starts
                await turn.remember(d)
            await at.remember(d)
            return reply
        body = await self._complete(req, rs, d, target, selfref)
        d.clamped = req.clamped
        if turn is not None:
            await turn.remember(d)
        await at.remember(d)
        self.recorder.store(req, embedding, body, None, d)
        return Reply(d, body=body)

    async def _decide(
        self, req: ChatRequest, rs: RouteSettings, d: Decision, vector: Any, effect: rules.RuleEffect | None = None,
        snap: tuple[Any, Any] | None = None, messages: list[dict[str, Any]] | None = None, scored: float | None = None,
    ) -> tuple[Route, str | None]:
        forced = req.controls.force_route
        if rs.pin is not None:
            route: Route = "reasoning" if self.settings.models[rs.pin].reasoning else "fast"
            d.route, d.reason = route, "alias"
            return route, rs.pin
        if forced is not None:
            d.route, d.reason = forced, "forced"
            return forced, None
        if effect is not None and effect.route is not None:
            d.route, d.reason = effect.route, "rule"
            return effect.route, None
        classifier, d.artifact = snap if snap is not None else snapshot(self.classifier)
        if classifier is not None and (vector is not None or (self.embedder is not None and not getattr(classifier, "reads_vector", True))):
            # features, lexical hashing and the head are CPU work: off the event loop, so a
            # huge prompt never stalls the other requests (or /healthz); usually already
            # done on the embedding worker (`scored`)
            p = float(scored) if scored is not None else float(
                await asyncio.to_thread(classifier.predict, req.messages if messages is None else messages, vector))
            threshold = rs.threshold if rs.threshold is not None else float(classifier.threshold)
            if effect is not None and effect.threshold is not None:
                threshold = effect.threshold
            threshold = effort.joint_cut(self.settings.routing, req, p, threshold, effect.threshold if effect else None)
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
            return await fanout.complete(target.upstream, self._body(req, target, **overrides), ctx, native=self._native(target))
        finally:
            ms = (time.perf_counter() - t) * 1000
            d.upstream_ms += ms
            timings.upstream(d, target.model_name, ms, ctx.deer)
            if ctx.deer is not None:
                d.deer = ctx.deer

    async def _complete(self, req: ChatRequest, rs: RouteSettings, d: Decision, target: _Target, selfref: bool) -> dict[str, Any]:
        try:
            if selfref:
                body = await self._call(req, d, target, **logprob_args(self.settings.selfref, req))
                if escalate(self.settings.selfref, req, d, body):
                    charge_discarded(self.settings, d, target, body)
                    self.recorder.hold_fast(d, body)
                    target = self._target(rs, "reasoning")
                    with tracing.span("thinkgate.selfref.escalate", {"thinkgate.selfref.confidence": d.confidence}):
                        body = await self._call(req, d, target)
                else:
                    strip_logprobs(req, body)
            else:
                body = await self._call(req, d, target)
        except errors.UpstreamError as e:
            target = self._fall_back(rs, d, target, e)
            body = await self._call(req, d, target)
        account(self.settings, req, d, target, body)
        return body

    def _fall_back(self, rs: RouteSettings, d: Decision, failed: _Target, e: errors.UpstreamError) -> _Target:
        """The other route's target after `failed` raised `e` (recorded in `d`), or `e`
        again when the route has no fallback, is pinned, or the error is not worth it."""
        if not rs.fallback or rs.pin is not None or not (e.retryable or isinstance(e, errors.UpstreamAuth)):
            raise e
        other: Route = "fast" if failed.route == "reasoning" else "reasoning"
        target = self._target(rs, other)
        if target.model_name == failed.model_name:
            raise e
        log.warning("upstream %s failed (%s); falling back to %s", failed.model_name, e.code, target.model_name)
        d.fallback_from, d.reason = failed.model_name, "fallback"
        return target

    # -- streaming ----------------------------------------------------------------------

    async def _stream(
        self, req: ChatRequest, rs: RouteSettings, d: Decision, target: _Target, selfref: bool, embedding: Any, t0: float
    ) -> Reply:
        if selfref and self.settings.selfref.prefix_tokens and d.n == 1:
            # judged on its first K tokens, then streamed (router/pipeline/prefix.py); n > 1
            # choices interleave in one stream, so those are buffered and judged whole
            def open_stream(**overrides: Any) -> AsyncIterator[dict[str, Any]]:
                body = self._body(req, target, **overrides)
                return fanout.stream(target.upstream, body, CallContext(controls=req.controls), native=self._native(target))

            try:
                kept = await prefix.judge(self.settings, self.recorder, req, d, target, embedding, t0, open_stream)
            except errors.UpstreamError as e:
                target = self._fall_back(rs, d, target, e)
            else:
                if kept is not None:
                    return kept
                target = self._target(rs, "reasoning")
        elif selfref:
            # The client must never see a fast answer that is then replaced, so the
            # fast answer is buffered until its confidence is known.
            try:
                buffered = await self._collect(req, d, target, **logprob_args(self.settings.selfref, req))
            except errors.UpstreamError as e:
                target = self._fall_back(rs, d, target, e)
            else:
                completion = assemble(buffered)
                if not escalate(self.settings.selfref, req, d, completion):
                    strip_chunk_logprobs(req, buffered)
                    if self.settings.selfref.mode == "confidence_token":
                        buffered = to_chunks(completion)
                    account(self.settings, req, d, target, completion)
                    return Reply(d, chunks=streaming.replay(self.recorder, req, d, buffered, embedding, completion, t0))
                charge_discarded(self.settings, d, target, completion)
                self.recorder.hold_fast(d, completion)
                target = self._target(rs, "reasoning")

        ctx = CallContext(controls=req.controls)
        if self.settings.models[target.model_name].reasoning:
            ctx.deer = DeerStats()
            d.deer = ctx.deer
        # headers go out before the stream ends: name the model that answers now
        d.upstream, d.upstream_model = target.model_name, target.upstream.model
        gen = fanout.stream(target.upstream, self._body(req, target), ctx, native=self._native(target))
        t = time.perf_counter()
        try:
            first = await gen.__anext__()
        except StopAsyncIteration:
            raise errors.UpstreamUnavailable(f"upstream {target.model_name} sent an empty stream", upstream=target.model_name) from None
        except errors.UpstreamError as e:
            target = self._fall_back(rs, d, target, e)
            d.route, d.upstream, d.upstream_model = target.route, target.model_name, target.upstream.model
            ctx = CallContext(controls=req.controls)
            if self.settings.models[target.model_name].reasoning:
                ctx.deer = DeerStats()
                d.deer = ctx.deer
            gen = fanout.stream(target.upstream, self._body(req, target), ctx, native=self._native(target))
            first = await gen.__anext__()
        # the upstream's time, first chunk included, is recorded when the stream ends (streaming.relay)
        return Reply(d, chunks=streaming.relay(self.settings, self.recorder, req, d, target, first, gen, embedding, t0, t))

    async def _collect(self, req: ChatRequest, d: Decision, target: _Target, **overrides: Any) -> list[dict[str, Any]]:
        t = time.perf_counter()
        try:
            body = self._body(req, target, **overrides)
            return [c async for c in fanout.stream(target.upstream, body, CallContext(controls=req.controls), native=self._native(target))]
        finally:
            ms = (time.perf_counter() - t) * 1000
            d.upstream_ms += ms
            timings.upstream(d, target.model_name, ms)

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
            return Reply(d, body=dict(response))
        chunks = hit.chunks or to_chunks(response)

        async def replay() -> AsyncIterator[dict[str, Any]]:
            roled: set[int] = set()
            try:
                for ch in chunks:
                    out = streaming.client_chunk(req, ch, roled)
                    if out is not None:
                        yield out
                tail = streaming.usage_chunk(req, d, chunks[0])
                if tail is not None:
                    yield tail
            finally:
                self.recorder.finish(d, t0)

        return Reply(d, chunks=replay())

    async def drain(self) -> None:
        await self.recorder.drain()
        if self.conversations is not None:
            await self.conversations.close()
        if self.loops is not None:
            await self.loops.close()

