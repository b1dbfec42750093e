"""Reloading the classifier without a restart, mounted by the app:

    POST /admin/router/reload   {} | {"artifact": "models/mine"}
    -> 200 {"artifact": {version, path, trained_at, ...}, "previous": version, "reload_ms": ...,
            "routes": {alias: {"threshold": effective, "source": "route" | "artifact"}},
            "warnings": [a configured route threshold that overrides the artifact's, ...]}
    -> 422 {"error": {"code": "artifact_invalid", "message": why}}  (the old artifact keeps serving)

and SIGHUP on the process does the same with the configured artifact path
(`install_sighup`, called at start-up). /admin/* is admin-only in the auth
middleware; the handler checks again so the route is safe wherever it is mounted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from router import errors
from router.access.admin import admin_body
from router.learning.slot import ClassifierSlot
from router.types import Caller

log = logging.getLogger("thinkgate.learning")


def effective(slot: ClassifierSlot, route_settings: Mapping[str, Any]) -> dict[str, Any]:
    """The threshold each classifier-routed alias compares P with now, where it comes
    from, and a warning for each configured one that overrides the artifact's
    (a configured `routes.<alias>.threshold` wins: router/pipeline/core.py `_decide`)."""
    art = getattr(slot.current.classifier, "threshold", None)
    art = float(art) if art is not None else None
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for alias, rs in route_settings.items():
        if getattr(rs, "pin", None) is not None:
            continue  # a pinned alias never asks the classifier
        if rs.threshold is not None:
            out[alias] = {"threshold": rs.threshold, "source": "route", "artifact_threshold": art}
            if art is None or abs(rs.threshold - art) > 1e-9:
                warnings.append(
                    f"routes.{alias}.threshold {rs.threshold:g} overrides the artifact's {art:g}: requests on '{alias}' "
                    f"use {rs.threshold:g}; remove routes.{alias}.threshold from the config and restart to use the artifact's"
                    if art is not None else f"routes.{alias}.threshold {rs.threshold:g} is in effect"
                )
        else:
            out[alias] = {"threshold": art, "source": "artifact", "artifact_threshold": art}
    return {"routes": out, "warnings": warnings}


def routes(slot: ClassifierSlot, route_settings: Mapping[str, Any] | None = None) -> list[Route]:
    route_settings = route_settings or {}

    async def reload(request: Request) -> JSONResponse:
        from policies.difficulty import ArtifactError

        body = await admin_body(request, "reloading the router")
        path = body.get("artifact")
        if path is not None and (not isinstance(path, str) or not path):
            raise errors.InvalidRequest("'artifact' must be a non-empty string (a directory or a name under models/)", param="artifact")
        if path is not None and not Path(path).expanduser().is_absolute() and ("/" in path or "\\" in path or path.startswith(".")):
            # a relative path would resolve against the gateway's working directory, which the
            # caller does not see: refused, so the artifact served is the one the caller meant
            raise errors.InvalidRequest(
                f"'artifact' must be an absolute path or a name under models/ (got the relative path {path!r}; "
                f"the gateway's working directory is {Path.cwd()})", param="artifact", code="artifact_path_relative",
            )
        try:
            out = await slot.reload(path)
        except ArtifactError as e:
            raise errors.InvalidRequest(
                f"artifact refused, still serving {slot.current.version}: {e}", param="artifact", code="artifact_invalid", status=422
            ) from None
        eff = effective(slot, route_settings)
        for w in eff["warnings"]:
            log.warning("after reload: %s", w)
        return JSONResponse({**out, **eff})

    async def current(request: Request) -> JSONResponse:
        state = request.scope.get("state") or {}
        caller = state.get("caller") if isinstance(state, dict) else None
        if isinstance(caller, Caller) and not caller.admin:
            raise errors.Forbidden("the router's state needs an admin key")
        return JSONResponse({**slot.state(), **effective(slot, route_settings)})

    return [Route("/admin/router/reload", reload, methods=["POST"]), Route("/admin/router", current, methods=["GET"])]


def install_sighup(slot: ClassifierSlot) -> Any:
    """SIGHUP -> reload the configured artifact; returns an async remover for shutdown.
    A refused artifact is logged (the slot says why) and the old one keeps serving."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()

    async def run() -> None:
        try:
            await slot.reload()
        except Exception:  # already logged by the slot with its reason
            pass

    def on_hup() -> None:
        task = loop.create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):  # no SIGHUP (Windows) or not the main thread
        log.info("SIGHUP reload not available here; use POST /admin/router/reload")
        return None

    async def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)
        for t in list(tasks):
            t.cancel()

    return remove
