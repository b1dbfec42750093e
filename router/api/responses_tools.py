"""The Responses request's tools, tool_choice and text.format -> their chat
equivalents (function tools flat -> nested under `function`, json_schema formats
-> `response_format`). Only function tools exist on a chat upstream, so other
tool types are refused with the field that names them."""

from __future__ import annotations

from typing import Any

from router.api.responses_fields import bad, check_type, str_field

_TOOL_CHOICES = {"auto", "none", "required"}


def chat_tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, t in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(t, dict):
            raise bad(f"'{where}' must be an object", where, "invalid_type")
        if t.get("type") != "function":
            raise bad(
                f"'{where}.type' {t.get('type')!r} is not supported: only function tools are",
                f"{where}.type",
                "unsupported_value",
            )
        name = str_field(t, "name", where)
        fn: dict[str, Any] = {"name": name}
        desc = t.get("description")
        if desc is not None:
            if not isinstance(desc, str):
                raise bad(f"'{where}.description' must be a string", f"{where}.description", "invalid_type")
            fn["description"] = desc
        params = t.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise bad(
                    f"'{where}.parameters' must be an object (a JSON schema)", f"{where}.parameters", "invalid_type"
                )
            fn["parameters"] = params
        strict = t.get("strict")
        if strict is not None:
            if not isinstance(strict, bool):
                raise bad(f"'{where}.strict' must be a boolean", f"{where}.strict", "invalid_type")
            fn["strict"] = strict
        out.append({"type": "function", "function": fn})
    return out


def chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise bad("'tool_choice' must be auto, none, required or a function", "tool_choice")
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise bad(
        "'tool_choice' must be auto, none, required or {'type': 'function', 'name': ...}",
        "tool_choice",
        "unsupported_value",
    )


def chat_response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    verbosity = text.get("verbosity")
    if verbosity is not None and verbosity not in ("low", "medium", "high"):
        raise bad("'text.verbosity' must be low, medium or high", "text.verbosity")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise bad("'text.format' must be an object", "text.format", "invalid_type")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        name = str_field(fmt, "name", "text.format")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise bad("'text.format.schema' must be an object (a JSON schema)", "text.format.schema", "invalid_type")
        js: dict[str, Any] = {"name": name, "schema": schema}
        for key, types in (("strict", (bool,)), ("description", (str,))):
            if fmt.get(key) is not None:
                check_type(f"text.format.{key}", fmt[key], types)
                js[key] = fmt[key]
        return {"type": "json_schema", "json_schema": js}
    raise bad("'text.format.type' must be text, json_object or json_schema", "text.format.type")
