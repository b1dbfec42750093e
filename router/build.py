"""Builds every part from settings and hands them to create_app: the one place
that knows which concrete class backs each seam."""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware

from router import auth, cache_admin, dashboard, limit_middleware, limits
from router.app import create_app
from router.cache import build_cache
from router.config import Settings
from router.decisions import build_log
from router.embedding import build_router_model
from router.metrics import CacheStateCollector, Metrics
from router.upstreams import LocalServers, build_upstreams
from router.upstreams.resilient import BreakerCollector, wrap_all

log = logging.getLogger("thinkgate.build")


def build_app(settings: Settings, *, local: LocalServers | None = None, env: dict[str, str] | None = None) -> Starlette:
    env = dict(os.environ) if env is None else env
    local = local or LocalServers()
    try:
        upstreams = wrap_all(build_upstreams(settings, local), settings.models, settings.limits.breaker)
        embedder, classifier = build_router_model(settings.classifier)
    except Exception:
        local.stop()  # don't leave model servers behind when start-up fails
        raise
    cache = build_cache(settings.cache) if settings.cache.enabled else None
    log_sink = build_log(settings)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    registry.register(BreakerCollector(upstreams))
    if cache is not None:
        registry.register(CacheStateCollector(cache))

    keys = auth.KeyStore.from_settings(settings.auth, env)
    limiter = limits.build_limiter(settings, limits.key_limits_from(keys))
    routes = [*dashboard.routes(log_sink, metrics, settings)]
    if cache is not None:
        routes += cache_admin.routes(cache)

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
            # auth outside, limits inside: limits read the caller that auth sets
            Middleware(auth.AuthMiddleware, keys=keys, public_paths=(*auth.PUBLIC_PATHS, *dashboard.PUBLIC_PATHS)),
            Middleware(limit_middleware.LimitMiddleware, limiter=limiter, controls_for=keys.allowed_controls),
        ],
        on_close=[limiter.close, stop_local],
        extra_ready={"limits": limiter},
    )
