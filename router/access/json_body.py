"""Request bodies decoded once, strictly, for every front end.

Python's `json.loads` accepts things no model API does and that break the steps
behind the parser: lone UTF-16 surrogates (`"x\\ud800"` is valid JSON, but the
string cannot be encoded, so the tokenizer, Redis and the decision log raise
later), `NaN` / `Infinity` and numbers that overflow to `inf` (not JSON; they
turn into 500s wherever the body is serialised again), and nesting deep enough
to exhaust the interpreter's recursion limit in whatever walks the body next.
`decode` refuses all of them with a 400 at parsing.

`JsonGuard` applies `decode` to every POST/PUT/PATCH body before any route runs,
so a front end added later (it reads `scope["state"]["parsed_body"]`, or parses
a body already known to be clean) is covered without doing anything itself.
The error body takes the protocol shape of the path (router.access.error_shapes).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from router import errors
from router.access import error_shapes

MAX_DEPTH = 64  # JSON Schemas in tools nest a dozen levels at most; 1,000 broke the parsers
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad(message: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, code="invalid_json")


def _no_constant(name: str) -> Any:
    raise _bad(f"the request body holds {name}, which is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _bad(f"the number {text[:40]} is out of range")
    return value


def decode(raw: bytes | str) -> Any:
    """The JSON value in `raw`, or InvalidRequest (400, code invalid_json)."""
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except errors.InvalidRequest:
        raise
    except RecursionError:
        raise _bad(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):  # includes ints over Python's 4,300-digit limit
        raise _bad("the request body is not valid JSON") from None
    check(data)
    return data


def check(data: Any) -> None:
    """Refuses lone surrogates (in keys and strings) and nesting over MAX_DEPTH.
    Iterative, so a deep body cannot exhaust the stack here either."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise _bad("the request body holds a lone UTF-16 surrogate (invalid Unicode)")
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise _bad(f"the request body nests deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for k, v in value.items():
                    if _SURROGATE.search(k):
                        raise _bad("the request body holds a lone UTF-16 surrogate (invalid Unicode)")
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in value)


_METHODS = frozenset({"POST", "PUT", "PATCH"})
CHECKED = "body_checked"  # scope state: the raw body `decode` accepted


def remember(state: Any, raw: bytes, value: Any) -> None:
    """Leaves a body `decode` accepted in the scope state: routes reuse the value
    (`parsed_body`), JsonGuard skips decoding it again (`body_checked`)."""
    if isinstance(state, dict):
        state[CHECKED] = raw
        if isinstance(value, dict):
            state["parsed_body"] = (raw, value)


class JsonGuard:
    """Pure ASGI: decodes each POST/PUT/PATCH body with `decode` before the route
    runs; a bad body is a 400 in the client's protocol shape, a good one is left
    in `scope["state"]["parsed_body"]` as (raw, value) for the route to reuse.
    A body a middleware outside already decoded with `decode` (same raw) is not
    decoded again."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in _METHODS:
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        try:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return  # the client left before sending its request
                if msg["type"] == "http.request":
                    parts.append(msg.get("body", b""))
                    if not msg.get("more_body", False):
                        break
        except errors.ThinkgateError as e:  # 413 from the body limit outside
            await send_error(send, e, scope.get("path", ""))
            return
        raw = b"".join(parts)
        state = scope.setdefault("state", {})
        checked = state.get(CHECKED) if isinstance(state, dict) else None
        if raw.strip() and not (checked is not None and checked == raw):
            try:
                value = decode(raw)
            except errors.ThinkgateError as e:
                await send_error(send, e, scope.get("path", ""))
                return
            remember(state, raw, value)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def send_error(send: Any, e: errors.ThinkgateError, path: str) -> None:
    body = json.dumps(error_shapes.body_for(path, e)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": e.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
