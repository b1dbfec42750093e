"""Field helpers shared by the Gemini request translation: Google's error wording,
its camelCase/snake_case name mapping, and the checks of objects and numbers."""

from __future__ import annotations

import math
from typing import Any

from router.errors import InvalidRequest


def bad(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_argument")


def camel(d: dict[str, Any]) -> dict[str, Any]:
    """snake_case keys -> camelCase (Google's JSON mapping accepts both)."""
    out = {}
    for k, v in d.items():
        head, *rest = str(k).split("_")
        out[head + "".join(w[:1].upper() + w[1:] for w in rest) if rest else k] = v
    return out


def obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise bad(f"{where}: must be an object", where)
    return camel(v)


def number(d: dict[str, Any], name: str, lo: float, hi: float | None, where: str) -> float | None:
    v = d.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise bad(f"{where}.{name}: must be a number", f"{where}.{name}")
    if v < lo or (hi is not None and v > hi):
        rng = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        raise bad(f"{where}.{name}: must be {rng}, got {v}", f"{where}.{name}")
    return v


def integer(d: dict[str, Any], name: str, lo: int, where: str) -> int | None:
    v = d.get(name)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(f"{where}.{name}: must be an integer", f"{where}.{name}")
    if v < lo:
        raise bad(f"{where}.{name}: must be at least {lo}, got {v}", f"{where}.{name}")
    return v
