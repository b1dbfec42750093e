"""The field checks every part of a Responses request shares: each failure is an
InvalidRequest naming the offending parameter (`input[2].content`, ...), so the
client gets an OpenAI-shaped 400 that points at its own field. Split from
input.py so the item and tool translations can use them without
importing the request parser."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from router.errors import InvalidRequest


def bad(msg: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(msg, param=param, code=code)


def typename(types: tuple[type, ...]) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return " or ".join(dict.fromkeys(names.get(t, "value") for t in types))


def check_type(name: str, value: Any, types: tuple[type, ...]) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise bad(f"'{name}' must be {typename(types)}", name, "invalid_type")


def str_field(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise bad(
            f"'{where}.{key}' must be a string", f"{where}.{key}", "invalid_type" if v is not None else "missing_field"
        )
    return v
