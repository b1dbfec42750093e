"""The operator dashboard: one static page (hand-written HTML/JS/CSS shipped in
this package, no CDN, no build step) that polls a small JSON API over the
decision log, plus the Prometheus `/metrics` endpoint.

Access follows the gateway's auth: when the auth middleware has put a caller in
`scope["state"]["caller"]`, only an admin caller gets through (OpenAI-shaped
403 otherwise); without a caller (no keys configured, or a path the middleware
leaves open) the routes answer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSON
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from router.decisions.log import DecisionLog, Filters
from router.decisions.metrics import Metrics
from router.errors import Forbidden, InvalidRequest, NotFound, ThinkgateError

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
ROUTE_VALUES = ("fast", "reasoning", "cache", "none")
CACHE_VALUES = ("miss", "exact", "semantic", "bypass", "off", "hit")
POLL_MS = 2000
# The page shell and its assets carry no data: let auth pass them without a key,
# so a browser can load the page and then send an admin key with its API calls.
PUBLIC_PATHS = ("/dashboard", "/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css")
MAX_LIMIT = 1000


# The page loads only its own script and calls only its own API: anything else (an injected
# script, a frame on another site, a sniffed content type) is refused. Its SVG charts set style
# attributes, hence 'unsafe-inline' for styles (only); checked in headless Chromium: 0 violations.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class JSONResponse(_StarletteJSON):
    """ASCII JSON: a record holding a string that is not valid Unicode (a lone
    surrogate from an old record) is still rendered, as an escape, instead of a 500."""

    def __init__(self, content: Any, status_code: int = 200, headers: Any = None) -> None:
        super().__init__(content, status_code=status_code, headers={"x-content-type-options": "nosniff", **(headers or {})})

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=str).encode()
        except ValueError:  # a NaN or infinity in some record: null, as JSON has no such number
            return json.dumps(_finite(content), ensure_ascii=True, separators=(",", ":"), default=str).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _error(err: ThinkgateError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers or None)


def denied(request: Request) -> JSONResponse | None:
    """403 for an authenticated caller that is not an admin; None when allowed."""
    state = request.scope.get("state") or {}
    caller = state.get("caller") if isinstance(state, dict) else getattr(state, "caller", None)
    if caller is not None and not getattr(caller, "admin", False):
        return _error(Forbidden("the dashboard and its API need an admin API key"))
    return None


def _filters(request: Request) -> tuple[Filters, int]:
    q = request.query_params
    route, cache = q.get("route") or None, q.get("cache") or None
    if route is not None and route not in ROUTE_VALUES:
        raise InvalidRequest(f"route must be one of {', '.join(ROUTE_VALUES)}", param="route")
    if cache is not None and cache not in CACHE_VALUES:
        raise InvalidRequest(f"cache must be one of {', '.join(CACHE_VALUES)}", param="cache")
    try:
        limit = int(q.get("limit") or 100)
    except ValueError:
        raise InvalidRequest("limit must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}", param="limit")
    try:
        since = float(q["since"]) if q.get("since") else None
        f = Filters(route=route, tenant=q.get("tenant"), escalated=q.get("escalated"), cache=cache, alias=q.get("alias"), since=since)
    except ValueError as e:
        raise InvalidRequest(str(e), param="escalated" if "true or false" in str(e) else "since") from None
    return f, limit


def _kwargs(f: Filters) -> dict[str, Any]:
    return {k: getattr(f, k) for k in Filters.__slots__ if getattr(f, k) is not None}


def _brief(rec: dict[str, Any]) -> dict[str, Any]:
    out = dict(rec)
    emb = out.pop("embedding", None)
    out["has_embedding"] = emb is not None
    return out


def _thresholds(settings: Any) -> dict[str, float | None]:
    routes = getattr(settings, "routes", None) or {}
    return {alias: getattr(r, "threshold", None) for alias, r in routes.items() if getattr(r, "pin", None) is None}


def routes(log: DecisionLog, metrics: Metrics | None = None, settings: Any = None, *, include_metrics: bool = True) -> list[Route]:
    """Starlette routes for /dashboard and /dashboard/api/*, plus /metrics when `metrics`
    is given and `include_metrics` (pass False to mount `metrics_route()` elsewhere)."""
    page = (STATIC / "index.html").read_bytes()
    assets = {name: (STATIC / name).read_bytes() for name in ASSETS}
    config = {"poll_ms": POLL_MS, "thresholds": _thresholds(settings)}

    async def index(request: Request) -> Response:
        return denied(request) or Response(page, media_type="text/html; charset=utf-8", headers={"cache-control": "no-cache", **PAGE_HEADERS})

    async def slash(request: Request) -> Response:
        return RedirectResponse("/dashboard", status_code=308)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return _error(NotFound(f"no dashboard asset {name!r}"))
        return Response(assets[name], media_type=ASSETS[name], headers={"cache-control": "no-cache", **PAGE_HEADERS})

    async def summary(request: Request) -> Response:
        if (resp := denied(request)) is not None:
            return resp
        q = request.query_params
        try:
            window = int(q["window"]) if q.get("window") else None
            since = float(q["since"]) if q.get("since") else None
        except ValueError:
            return _error(InvalidRequest("window must be an integer and since a unix time", param="window"))
        if window is not None and not 1 <= window <= 100_000:
            return _error(InvalidRequest("window must be between 1 and 100000", param="window"))
        out = await log.summary(window=window, since=since)
        out["config"] = config
        return JSONResponse(out)

    async def decisions(request: Request) -> Response:
        if (resp := denied(request)) is not None:
            return resp
        try:
            f, limit = _filters(request)
        except ThinkgateError as e:
            return _error(e)
        recs = await log.recent(limit, **_kwargs(f))
        return JSONResponse({"object": "list", "data": [_brief(r) for r in recs], "count": len(recs), "limit": limit, "filters": _kwargs(f)})

    async def decision(request: Request) -> Response:
        if (resp := denied(request)) is not None:
            return resp
        rec = await log.get(request.path_params["id"])
        if rec is None:
            return _error(NotFound(f"no decision {request.path_params['id']!r} in the log (it may have been trimmed)", param="id"))
        return JSONResponse(rec)

    async def export(request: Request) -> Response:
        """JSONL of recent records (newest first), the input of `thinkgate replay --file`."""
        if (resp := denied(request)) is not None:
            return resp
        try:
            f, _ = _filters(request)
            limit = int(request.query_params.get("limit") or 100_000)
        except (ThinkgateError, ValueError) as e:
            return _error(e if isinstance(e, ThinkgateError) else InvalidRequest("limit must be an integer", param="limit"))
        recs = await log.recent(max(1, min(limit, 1_000_000)), **_kwargs(f))

        async def lines() -> Any:
            for r in recs:
                yield json.dumps(r, separators=(",", ":")) + "\n"

        return StreamingResponse(
            lines(), media_type="application/x-ndjson", headers={"content-disposition": 'attachment; filename="decisions.jsonl"'}
        )

    out = [
        Route("/dashboard", index, methods=["GET"], name="dashboard"),
        Route("/dashboard/", slash, methods=["GET"]),
        Route("/dashboard/static/{name}", asset, methods=["GET"]),
        Route("/dashboard/api/summary", summary, methods=["GET"]),
        Route("/dashboard/api/decisions", decisions, methods=["GET"]),
        Route("/dashboard/api/decisions/{id}", decision, methods=["GET"]),
        Route("/dashboard/api/export.jsonl", export, methods=["GET"]),
    ]
    if metrics is not None and include_metrics:
        out.append(metrics_route(metrics))
    return out


def metrics_endpoint(metrics: Metrics) -> Any:
    """The /metrics handler (Prometheus text format); same access rule as the dashboard."""

    async def endpoint(request: Request) -> Response:
        if (resp := denied(request)) is not None:
            return resp
        return Response(metrics.render(), media_type=metrics.content_type)

    return endpoint


def metrics_route(metrics: Metrics, path: str = "/metrics") -> Route:
    return Route(path, metrics_endpoint(metrics), methods=["GET"], name="metrics")
