"""Builds every part from settings and hands them to create_app. The one place
that knows which concrete class backs each seam."""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette

from router.app import create_app
from router.config import Settings
from router.upstreams import LocalServers, build_upstreams

log = logging.getLogger("thinkgate.build")


def build_app(settings: Settings, *, local: LocalServers | None = None) -> Starlette:
    local = local or LocalServers()
    upstreams = build_upstreams(settings, local)
    parts: dict[str, Any] = {}

    async def stop_local() -> None:
        local.stop()

    return create_app(settings, upstreams=upstreams, on_close=[stop_local], **parts)
