"""`item_reference` inputs -> the items they name, from the response store.

With `store` on, the Vercel AI SDK (and OpenAI's own clients) send an earlier
turn's output items back as `{"type": "item_reference", "id": "rs_..."}`
instead of the item. thinkgate stores each output item of a stored response
under its id (`item_key`), scoped by tenant like the response itself, so the
reference is replaced by the item before the request is parsed: a reasoning
item then is dropped as any reasoning input is, a message or function call
becomes its chat turn. An id the tenant has no item for is OpenAI's 404.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from router import errors

ITEM_PREFIX = "item:"  # store key prefix: item ids never collide with response ids


def item_key(item_id: str) -> str:
    return ITEM_PREFIX + item_id


def references(data: dict[str, Any]) -> list[str]:
    items = data.get("input")
    if not isinstance(items, list):
        return []
    return [
        i["id"]
        for i in items
        if isinstance(i, dict) and i.get("type") == "item_reference" and isinstance(i.get("id"), str)
    ]


async def resolve(data: dict[str, Any], load: Callable[[str], Awaitable[dict[str, Any] | None]]) -> dict[str, Any]:
    """`data` with each item_reference in `input` replaced by the stored item
    (`load(key)` reads the caller's tenant's store). Returns a new dict; `data`
    is left as it was."""
    ids = references(data)
    if not ids:
        return data
    found: dict[str, dict[str, Any]] = {}
    for item_id in dict.fromkeys(ids):
        rec = await load(item_key(item_id))
        item = rec.get("item") if isinstance(rec, dict) else None
        if not isinstance(item, dict):
            raise errors.NotFound(
                f"Item with id '{item_id}' not found. Items are not persisted when `store` is set to false; "
                "send the item itself, or store the response that made it.",
                param="input",
                code="item_not_found",
            )
        found[item_id] = item
    out = []
    for i in data["input"]:
        if isinstance(i, dict) and i.get("type") == "item_reference" and isinstance(i.get("id"), str):
            # a copy: the in-process store hands out its own objects, the parser must not share them
            out.append(json.loads(json.dumps(found[i["id"]])))
        else:
            out.append(i)
    return {**data, "input": out}
