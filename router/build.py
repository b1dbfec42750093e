"""Builds every part from settings and hands them to create_app: the one place
that knows which concrete class backs each seam."""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware

from router import dashboard, tracing
from router.dashboard import learning as dashboard_learning
from router.access import auth, limits
from router.access import middleware as limit_middleware
from router.app import create_app
from router.cache import admin as cache_admin
from router.cache import build_cache
from router.cache.stored_responses import build_response_store
from router.config import Settings
from router.decisions.log import build_log
from router.decisions.metrics import CacheStateCollector, Metrics
from router.deer.clients import build_model, build_upstreams  # noqa: F401  (build_model re-exported)
from router.embedding.batcher import build_router_model
from router.embedding.encoders import DIM
from router.learning import admin as learning_admin
from router.learning.metrics import LearningCollector
from router.learning.outcome_log import build_outcome_log
from router.learning.shadow import Learner
from router.learning.slot import ClassifierSlot
from router.upstreams import LocalServers
from router.upstreams.resilient import BreakerCollector, wrap_all

log = logging.getLogger("thinkgate.build")


def build_app(settings: Settings, *, local: LocalServers | None = None, env: dict[str, str] | None = None) -> Starlette:
    env = dict(os.environ) if env is None else env
    local = local or LocalServers()
    traces = tracing.from_env(env)  # None unless OTEL_* turn it on
    try:
        upstreams = build_upstreams(settings, local)
        if traces is not None:  # a span per attempt: inside the retries
            upstreams = traces.wrap(upstreams, settings.models)
        upstreams = wrap_all(upstreams, settings.models, settings.limits.breaker)
        embedder, classifier = build_router_model(settings.classifier)
    except Exception:
        local.stop()  # don't leave model servers behind when start-up fails
        raise
    slot = None
    if classifier is not None and settings.classifier.artifact:
        # swappable while serving: POST /admin/router/reload and SIGHUP (router/learning/)
        slot = classifier = ClassifierSlot.around(classifier, settings.classifier.artifact, getattr(embedder, "dim", None))
    learner = Learner(settings, upstreams, build_outcome_log(settings)) if settings.learning.judge else None
    # the cache stores the routing encoder's sentence embedding: its width is that encoder's
    width = min(int(embedder.dim), DIM) if embedder is not None else None
    cache = build_cache(settings.cache, width) if settings.cache.enabled else None
    log_sink = build_log(settings)
    rs = settings.responses
    response_store = build_response_store(
        rs.redis_url or settings.cache.redis_url, ttl_s=rs.ttl_s, max_entries=rs.max_entries, timeout_ms=rs.timeout_ms, namespace=rs.namespace
    )
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    registry.register(BreakerCollector(upstreams))
    if cache is not None:
        registry.register(CacheStateCollector(cache))
    registry.register(LearningCollector(learner, slot))

    keys = auth.KeyStore.from_settings(settings.auth, env)
    limiter = limits.build_limiter(settings, limits.key_limits_from(keys))
    routes = [*dashboard.routes(log_sink, metrics, settings)]
    if cache is not None:
        routes += cache_admin.routes(cache)
    routes += dashboard_learning.routes(slot, learner)
    if slot is not None:
        routes += learning_admin.routes(slot, settings.routes)

    async def sighup() -> object:
        return learning_admin.install_sighup(slot) if slot is not None else None

    async def start_learning() -> object:
        # the undo runs first at shutdown: shadow jobs are cancelled before the upstreams close
        return learner.close if learner is not None else None

    async def stop_local() -> None:
        local.stop()

    return create_app(
        settings,
        upstreams=upstreams,
        embedder=embedder,
        classifier=classifier,
        cache=cache,
        log_sink=log_sink,
        metrics=metrics,
        routes=routes,
        middleware=[
            *([traces.middleware()] if traces is not None else []),  # outermost: 401s and 429s are traced too
            # auth outside, limits inside: limits read the caller that auth sets
            Middleware(auth.AuthMiddleware, keys=keys, public_paths=(*auth.PUBLIC_PATHS, *dashboard.PUBLIC_PATHS)),
            Middleware(limit_middleware.LimitMiddleware, limiter=limiter, controls_for=keys.allowed_controls),
        ],
        on_close=[limiter.close, stop_local, *([traces.close] if traces is not None else [])],
        extra_ready={"limits": limiter},
        learner=learner,
        on_start=[sighup, start_learning],
        response_store=response_store,
    )
