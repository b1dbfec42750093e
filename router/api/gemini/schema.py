"""Gemini's `Schema` (an OpenAPI 3.0 subset: upper-case `type` enums, `nullable`,
`propertyOrdering`) -> the JSON Schema that OpenAI-compatible upstreams validate.
`parametersJsonSchema` / `responseJsonSchema` are JSON Schema already and pass as they are."""

from __future__ import annotations

from typing import Any

from router.errors import InvalidRequest

# keys with the same meaning in both; anything else is Gemini-only bookkeeping
_SAME = {
    "description", "enum", "format", "required", "minimum", "maximum", "minItems", "maxItems", "minLength",
    "maxLength", "pattern", "title", "default", "minProperties", "maxProperties",
}  # fmt: skip
_DROPPED = {"propertyOrdering", "example", "nullable", "type", "properties", "items", "anyOf"}
_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}
_MAX_DEPTH = 64  # a schema nested deeper is an attack, not a tool


def to_json_schema(schema: Any, where: str, depth: int = 0) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise InvalidRequest(f"{where}: schema nested too deeply", param=where)
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{where}: a schema must be an object", param=where)
    out: dict[str, Any] = {k: v for k, v in schema.items() if k in _SAME}
    t = schema.get("type")
    if t is not None:
        if not isinstance(t, str) or t.lower() not in _TYPES | {"type_unspecified"}:
            raise InvalidRequest(f"{where}.type: unknown type {t!r}", param=where)
        if t.lower() != "type_unspecified":
            out["type"] = [t.lower(), "null"] if schema.get("nullable") is True else t.lower()
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise InvalidRequest(f"{where}.properties: must be an object", param=where)
        out["properties"] = {k: to_json_schema(v, f"{where}.properties.{k}", depth + 1) for k, v in props.items()}
    if schema.get("items") is not None:
        out["items"] = to_json_schema(schema["items"], f"{where}.items", depth + 1)
    any_of = schema.get("anyOf")
    if any_of is not None:
        if not isinstance(any_of, list):
            raise InvalidRequest(f"{where}.anyOf: must be a list", param=where)
        out["anyOf"] = [to_json_schema(s, f"{where}.anyOf.{i}", depth + 1) for i, s in enumerate(any_of)]
    return out
