"""Admin endpoint over the response cache, mounted by the app:

    POST /admin/cache/invalidate   {"tenant": "acme"} | {"alias": "auto"} | both | {"all": true}
    -> {"invalidated": <entries removed>, "tenant": ..., "alias": ...}

/admin/* is admin-only in the auth middleware; the handler checks again so the
route is safe wherever it is mounted. Errors are thinkgate errors, which the
app turns into OpenAI-shaped bodies.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from router import errors
from router.access.admin import admin_body


def _str_or_none(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise errors.InvalidRequest(f"'{name}' must be a string", param=name)


def routes(cache: Any) -> list[Route]:
    async def invalidate(request: Request) -> JSONResponse:
        body = await admin_body(request, "cache invalidation")
        tenant, alias = _str_or_none(body, "tenant"), _str_or_none(body, "alias")
        if tenant is None and alias is None and body.get("all") is not True:
            raise errors.InvalidRequest("name a 'tenant' and/or an 'alias', or send {\"all\": true}")
        n = await cache.invalidate(tenant, alias)
        return JSONResponse({"invalidated": n, "tenant": tenant, "alias": alias})

    return [Route("/admin/cache/invalidate", invalidate, methods=["POST"])]
