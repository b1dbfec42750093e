"""OpenAI JSON <-> thinkgate types: request validation, per-request controls and
SSE framing. Folding a chunk stream into one completion (and back) is the pipeline's
(router.pipeline.replies): the reply shape is internal, not this protocol's."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from router.errors import InvalidRequest
from router.types import CacheControl, ChatRequest, Controls, DeerControl, Endpoint

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}

# field -> (accepted python types, check) for fields thinkgate validates itself.
_NUM = (int, float)
_COMMON: dict[str, tuple[tuple[type, ...], Any]] = {
    "model": ((str,), None),
    "stream": ((bool,), None),
    "stream_options": ((dict,), None),
    "temperature": (_NUM, (0.0, 2.0)),
    "top_p": (_NUM, (0.0, 1.0)),
    "n": ((int,), (1, 128)),  # OpenAI's limit; answered by fan-out (router/pipeline/fanout.py)
    "max_tokens": ((int,), (1, None)),
    "presence_penalty": (_NUM, (-2.0, 2.0)),
    "frequency_penalty": (_NUM, (-2.0, 2.0)),
    "seed": ((int,), None),
    "user": ((str,), None),
    "logit_bias": ((dict,), None),
    "stop": ((str, list, type(None)), None),
    "thinkgate": ((dict,), None),
    # provider extras that OpenAI-compatible servers (vLLM, llama.cpp) understand
    "top_k": ((int,), (-1, None)),
    "min_p": (_NUM, (0.0, 1.0)),
    "repetition_penalty": (_NUM, (0.0, None)),
}
_CHAT: dict[str, tuple[tuple[type, ...], Any]] = {
    "messages": ((list,), None),
    "max_completion_tokens": ((int,), (1, None)),
    "logprobs": ((bool,), None),
    "top_logprobs": ((int,), (0, 20)),
    "tools": ((list,), None),
    "tool_choice": ((str, dict), None),
    "parallel_tool_calls": ((bool,), None),
    "response_format": ((dict,), None),
    "metadata": ((dict,), None),
    "prompt_cache_key": ((str,), None),  # also names the conversation (routing.conversation)
    "store": ((bool,), None),
    "reasoning_effort": ((str,), None),
    "service_tier": ((str,), None),
    "functions": ((list,), None),
    "function_call": ((str, dict), None),
    "chat_template_kwargs": ((dict,), None),
}
_COMPLETION: dict[str, tuple[tuple[type, ...], Any]] = {
    "prompt": ((str, list), None),
    "logprobs": ((int, type(None)), (0, 20)),
    "echo": ((bool,), None),
    "suffix": ((str, type(None)), None),
    "best_of": ((int,), (1, 1)),
}
_UNSUPPORTED = {
    "audio": "audio output is not supported",
    "modalities": "only text output is supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
}


def _typename(types: tuple[type, ...]) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return " or ".join(names.get(t, "null") for t in types)


def _check_field(name: str, value: Any, spec: tuple[tuple[type, ...], Any]) -> None:
    types, bounds = spec
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise InvalidRequest(f"'{name}' must be {_typename(types)}", param=name, code="invalid_type")
    if bounds and isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = bounds
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo == hi:
                raise InvalidRequest(f"'{name}' must be {lo}: other values are not supported", param=name, code="unsupported_value")
            rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise InvalidRequest(f"'{name}' must be {rng}, got {value}", param=name, code="invalid_value")


def _check_messages(messages: list[Any]) -> None:
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages", code="invalid_value")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest(f"'{where}' must be an object", param=where, code="invalid_type")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(
                f"'{where}.role' must be one of {', '.join(sorted(ROLES))}", param=f"{where}.role", code="invalid_value"
            )
        content = m.get("content")
        if content is None:
            if role == "assistant" and (m.get("tool_calls") or m.get("function_call")):
                continue
            raise InvalidRequest(f"'{where}.content' is required", param=f"{where}.content", code="missing_field")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise InvalidRequest(
                        f"'{where}.content[{j}]' must be an object with a 'type'", param=f"{where}.content", code="invalid_type"
                    )
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise InvalidRequest(f"'{where}.content[{j}].text' must be a string", param=f"{where}.content", code="invalid_type")
        elif not isinstance(content, str):
            raise InvalidRequest(f"'{where}.content' must be a string or an array of parts", param=f"{where}.content", code="invalid_type")


# -- controls -------------------------------------------------------------------

_CONTROL_KEYS = ("force-route", "cache-control", "deer", "selfref-threshold", "debug", "reasoning-field")


def parse_controls(headers: Mapping[str, str], extra: Mapping[str, Any] | None) -> Controls:
    """Read x-thinkgate-* headers; `extra_body={"thinkgate": {...}}` keys override them."""
    raw: dict[str, Any] = {}
    for key in _CONTROL_KEYS:
        v = headers.get(f"x-thinkgate-{key}")
        if v is not None:
            raw[key] = v
    for k, v in (extra or {}).items():
        key = str(k).replace("_", "-")
        if key not in _CONTROL_KEYS:
            raise InvalidRequest(f"unknown thinkgate control '{k}'", param=f"thinkgate.{k}", code="invalid_value")
        raw[key] = v

    force = raw.get("force-route")
    if force is not None:
        force = str(force).strip().lower()
        if force in ("", "auto", "none"):
            force = None
        elif force not in ("fast", "reasoning"):
            raise InvalidRequest("x-thinkgate-force-route must be 'fast' or 'reasoning'", param="x-thinkgate-force-route", code="invalid_value")

    cache = CacheControl()
    if "cache-control" in raw:
        cache = _parse_cache_control(str(raw["cache-control"]))

    deer = DeerControl()
    if "deer" in raw:
        deer = _parse_deer(str(raw["deer"]))

    selfref = None
    if "selfref-threshold" in raw:
        selfref = _float(raw["selfref-threshold"], "x-thinkgate-selfref-threshold", lo=0.0)

    debug = str(raw.get("debug", "0")).strip().lower() in ("1", "true", "yes", "on")
    field = raw.get("reasoning-field")
    if field is not None:
        field = str(field).strip().lower()
        if field not in ("reasoning_content", "reasoning"):
            raise InvalidRequest(
                "x-thinkgate-reasoning-field must be 'reasoning_content' or 'reasoning'",
                param="x-thinkgate-reasoning-field",
                code="invalid_value",
            )
    return Controls(force_route=force, cache=cache, deer=deer, selfref_threshold=selfref, debug=debug, reasoning_field=field)


def _float(value: Any, param: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{param} must be a number, got {value!r}", param=param, code="invalid_value") from None
    if not math.isfinite(f) or (lo is not None and f < lo) or (hi is not None and f > hi):
        raise InvalidRequest(f"{param} is out of range: {value!r}", param=param, code="invalid_value")
    return f


def _parse_cache_control(value: str) -> CacheControl:
    no_cache = no_store = opt_in = False
    max_age = None
    for part in filter(None, (p.strip().lower() for p in value.split(","))):
        if part == "opt-in":
            opt_in = True
        elif part == "no-cache":
            no_cache = True
        elif part == "no-store":
            no_store = True
        elif part.startswith("max-age="):
            max_age = int(_float(part.split("=", 1)[1], "x-thinkgate-cache-control max-age", lo=0))
        else:
            raise InvalidRequest(
                f"x-thinkgate-cache-control: unknown directive '{part}' (use no-cache, no-store, max-age=N, opt-in)",
                param="x-thinkgate-cache-control",
                code="invalid_value",
            )
    return CacheControl(no_cache=no_cache, no_store=no_store, max_age=max_age, opt_in=opt_in)


def _parse_deer(value: str) -> DeerControl:
    v = value.strip().lower()
    if v in ("off", "false", "0"):
        return DeerControl(enabled=False)
    if v in ("on", "true", "1", ""):
        return DeerControl()
    if v.startswith("threshold="):
        return DeerControl(threshold=_float(v.split("=", 1)[1], "x-thinkgate-deer threshold", lo=0.0, hi=1.0))
    raise InvalidRequest("x-thinkgate-deer must be 'off', 'on' or 'threshold=X'", param="x-thinkgate-deer", code="invalid_value")


# -- requests -------------------------------------------------------------------


def parse_request(
    endpoint: Endpoint, raw: bytes, headers: Mapping[str, str], parsed: dict[str, Any] | None = None
) -> ChatRequest:
    """`parsed`: the body already decoded by a middleware (the same `raw`), to skip a second json.loads."""
    if parsed is not None:
        data: Any = parsed
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")

    spec = {**_COMMON, **(_CHAT if endpoint == "chat" else _COMPLETION)}
    for name, value in data.items():
        if name in _UNSUPPORTED:
            raise InvalidRequest(f"'{name}': {_UNSUPPORTED[name]}", param=name, code="unsupported_parameter")
        if name not in spec:
            raise InvalidRequest(f"Unrecognized request argument supplied: {name}", param=name, code="unsupported_parameter")
        if value is None and name not in ("stop", "logprobs", "suffix"):
            continue
        if isinstance(value, float) and int in spec[name][0] and float not in spec[name][0] and value.is_integer():
            # JSON has one number type: 16.0 is the integer 16 (JSON Schema agrees; fuzzing found it)
            value = data[name] = int(value)
        _check_field(name, value, spec[name])

    required = "messages" if endpoint == "chat" else "prompt"
    for name in ("model", required):
        if name not in data or data[name] is None:
            raise InvalidRequest(f"'{name}' is required", param=name, code="missing_field")
    if not data["model"].strip():
        raise InvalidRequest("'model' must not be empty", param="model", code="invalid_value")

    prompt: str | None = None
    if endpoint == "chat":
        _check_messages(data["messages"])
        messages = data["messages"]
        if data.get("top_logprobs") and not data.get("logprobs"):
            raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true", param="top_logprobs", code="invalid_value")
    else:
        p = data["prompt"]
        if isinstance(p, list):
            if len(p) != 1 or not isinstance(p[0], str):
                raise InvalidRequest("'prompt' must be a string (batched prompts are not supported)", param="prompt", code="unsupported_value")
            p = p[0]
        prompt = p
        messages = [{"role": "user", "content": p}]
    stop = data.get("stop")
    if isinstance(stop, list) and (len(stop) > 4 or not all(isinstance(s, str) for s in stop)):
        raise InvalidRequest("'stop' must be a string or up to 4 strings", param="stop", code="invalid_value")

    stream_options = data.get("stream_options") or {}
    include_usage = stream_options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise InvalidRequest("'stream_options.include_usage' must be a boolean", param="stream_options", code="invalid_type")
    controls = parse_controls(headers, data.get("thinkgate"))

    body = {k: v for k, v in data.items() if k not in ("thinkgate", "stream", "stream_options")}
    if endpoint == "completion":
        body["prompt"] = prompt
    return ChatRequest(
        endpoint=endpoint,
        alias=data["model"],
        body=body,
        messages=messages,
        stream=bool(data.get("stream", False)),
        include_usage=include_usage,
        controls=controls,
        prompt=prompt,
    )


def max_tokens(req: ChatRequest, default: int) -> int:
    v = req.body.get("max_completion_tokens") or req.body.get("max_tokens")
    return int(v) if v else default


# -- SSE ------------------------------------------------------------------------

DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
