"""The dashboard's learning view: the classifier artifact in use, the outcomes
collected, and how good the current router is on recent shadowed traffic.

    GET /dashboard/api/learning?window=500

Quality is measured on shadow records only: they are a uniform sample of the
routed traffic, while escalations are the fast answers Self-Ref doubted (a
biased sample, counted but not scored). Each record keeps the difficulty the
router gave it and the threshold it was routed with, so APGR (policies.
router_quality) and the quality kept at the live threshold need no re-scoring;
they are reported for the artifact in use and for the whole window.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from policies.router_quality import apgr, at_threshold
from router.errors import InvalidRequest, ThinkgateError

MIN_PAIRS = 10  # fewer graded pairs say nothing about a router


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def quality(records: list[dict[str, Any]]) -> dict[str, Any]:
    """APGR and the live-threshold figures on shadow records with a difficulty."""
    rows = [r for r in records if r.get("source") == "shadow" and r.get("difficulty") is not None and r.get("threshold") is not None]
    out: dict[str, Any] = {"n": len(rows)}
    if len(rows) < MIN_PAIRS:
        out["note"] = f"needs at least {MIN_PAIRS} graded shadow pairs routed by the classifier"
        return out
    p = [float(r["difficulty"]) for r in rows]
    f = [float(r["fast"]) for r in rows]
    s = [float(r["strong"]) for r in rows]
    live = at_threshold(p, [float(r["threshold"]) for r in rows], f, s)
    out.update({
        "q_fast": _finite(sum(f) / len(f)), "q_strong": _finite(sum(s) / len(s)), "apgr": _finite(apgr(p, f, s)),
        "live_share": _finite(live["share"]), "live_quality": _finite(live["quality"]), "live_pgr": _finite(live["pgr"]),
    })  # fmt: skip
    if out["apgr"] is None:
        out["note"] = "the strong route is not better on these pairs: APGR is undefined"
    return out


def routes(slot: Any, learner: Any) -> list[Route]:
    from router.dashboard import denied  # the package's access rule, imported late (it imports us)

    async def learning(request: Request) -> Response:
        if (resp := denied(request)) is not None:
            return resp
        try:
            window = int(request.query_params.get("window") or 500)
            if not 1 <= window <= 100_000:
                raise ValueError
        except ValueError:
            e: ThinkgateError = InvalidRequest("window must be an integer between 1 and 100000", param="window")
            return JSONResponse(e.body(), status_code=e.status)
        out: dict[str, Any] = {"artifact": slot.state() if slot is not None else None, "learning": None}
        if learner is not None:
            out["learning"] = learner.state()
            try:
                recent = await learner.log.recent(window, tenant=request.query_params.get("tenant") or None)
                total = await learner.log.count()
            except Exception as e:  # the log's store is down: the page says so, the gateway serves on
                out["outcomes"] = {"error": f"{type(e).__name__}: {e}"[:200]}
                return JSONResponse(out)
            version = slot.current.version if slot is not None else None
            by_source: dict[str, int] = {}
            for r in recent:
                by_source[str(r.get("source"))] = by_source.get(str(r.get("source")), 0) + 1
            out["outcomes"] = {"total": total, "window": len(recent), "by_source": by_source, "log": learner.log.describe()}
            out["quality"] = {
                "current_artifact": quality([r for r in recent if r.get("artifact") == version]),
                "window": quality(recent),
            }
        return JSONResponse(out)

    return [Route("/dashboard/api/learning", learning, methods=["GET"])]
