"""What every /admin/* handler checks first: the caller is an admin (the auth
middleware already requires it; the handler checks again so the route is safe
wherever it is mounted) and the body, if any, is a JSON object."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from router import errors
from router.types import Caller


async def admin_body(request: Request, action: str) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); `action` names what needs the admin key."""
    state = request.scope.get("state") or {}
    caller = state.get("caller") if isinstance(state, dict) else None
    if isinstance(caller, Caller) and not caller.admin:
        raise errors.Forbidden(f"{action} needs an admin key")
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise errors.InvalidRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise errors.InvalidRequest("the body must be a JSON object")
    return body
