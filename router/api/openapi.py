"""`GET /openapi.json`: an OpenAPI 3.1 document of the routes this app serves.

Request schemas say what router.api.protocol accepts, with the limits of this
server's settings (n, max_tokens, messages), strictly enough that a generator
(schemathesis) produces valid requests from them and invalid ones from their
negation. A front end adds its paths with one entry in `SECTIONS`: a function
from settings to OpenAPI path items. Paths the app does not route are left out,
so an entry for a front end that is not mounted is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from router.config import Settings
from router.settings.aliases import is_pattern

Paths = dict[str, dict[str, Any]]

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_ERRORS = {
    str(code): {"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for code, why in (
        (400, "invalid request"),
        (401, "missing or invalid API key"),
        (403, "not allowed for this key"),
        (404, "unknown model or route"),
        (413, "body too large"),
        (429, "rate limited"),
        (502, "the upstream failed"),
        (503, "no upstream available"),
        (504, "the upstream timed out"),
    )
}


def _json_ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _text_parts(extra: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    text = {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
    return {"type": "array", "items": {"anyOf": [text, *extra]}}


def _message_schemas() -> list[dict[str, Any]]:
    image = {
        "type": "object",
        "required": ["type", "image_url"],
        "properties": {"type": {"const": "image_url"}, "image_url": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}}},
    }
    tool_call = {
        "type": "object",
        "required": ["id", "type", "function"],
        "properties": {
            "id": {"type": "string"},
            "type": {"const": "function"},
            "function": {
                "type": "object",
                "required": ["name", "arguments"],
                "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
            },
        },
    }
    name = {"type": "string"}

    def role(r: str, content: dict[str, Any], **props: Any) -> dict[str, Any]:
        required = props.pop("_required", ["role", "content"])
        return {"type": "object", "required": required, "properties": {"role": {"const": r}, "content": content, **props}}

    text_or_parts = {"anyOf": [{"type": "string"}, _text_parts()]}
    return [
        role("system", text_or_parts, name=name),
        role("developer", text_or_parts, name=name),
        role("user", {"anyOf": [{"type": "string"}, _text_parts([image])]}, name=name),
        role("assistant", {"anyOf": [{"type": "string"}, _text_parts()]}, name=name, refusal={"type": ["string", "null"]},
             reasoning_content={"type": "string"}, tool_calls={"type": "array", "items": tool_call}),
        # content null needs a tool call (protocol._check_messages)
        role("assistant", {"type": "null"}, _required=["role", "content", "tool_calls"],
             tool_calls={"type": "array", "items": tool_call, "minItems": 1}),
        role("tool", {"anyOf": [{"type": "string"}, _text_parts()]}, _required=["role", "content", "tool_call_id"],
             tool_call_id={"type": "string"}),
    ]  # fmt: skip


def _common(settings: Settings) -> dict[str, Any]:
    lim = settings.limits
    return {
        "model": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}, "additionalProperties": False},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": lim.max_n},
        "max_tokens": _max_tokens(settings),
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "seed": {"type": "integer"},
        "user": {"type": "string"},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}, {"type": "null"}]},
        "thinkgate": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "force_route": {"enum": ["auto", "fast", "reasoning"]},
                "cache_control": {"enum": ["no-cache", "no-store", "opt-in", "max-age=60"]},
                "deer": {"enum": ["on", "off", "threshold=0.9"]},
                "debug": {"type": "boolean"},
                "reasoning_field": {"enum": ["reasoning_content", "reasoning"]},
            },
        },
    }


def _models(settings: Settings) -> list[str]:
    return [*settings.routes, *(m for m in settings.models if m not in settings.routes)]


def _model_schema(settings: Settings) -> dict[str, Any]:
    """An enum of the names served, or any string when a `routes:` pattern serves names
    no list can hold (router/settings/aliases.py)."""
    names = _models(settings)
    if any(is_pattern(n) for n in names):
        return {"type": "string", "description": "served by the routes: " + ", ".join(names)}
    return {"enum": names}


def _max_tokens(settings: Settings) -> dict[str, Any]:
    """limits.max_tokens bounds the schema only where a larger ask is refused, not clamped."""
    if settings.limits.over_max_tokens == "refuse":
        return {"type": "integer", "minimum": 1, "maximum": settings.limits.max_tokens}
    return {"type": "integer", "minimum": 1}


def chat_paths(settings: Settings) -> Paths:
    lim = settings.limits
    props = {
        **_common(settings),
        "model": _model_schema(settings) if settings.routes else {"type": "string"},
        "messages": {"type": "array", "minItems": 1, "maxItems": lim.max_messages, "items": {"anyOf": _message_schemas()}},
        "max_completion_tokens": _max_tokens(settings),
        "logprobs": {"type": "boolean"},
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "function"],
                "properties": {
                    "type": {"const": "function"},
                    "function": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "description": {"type": "string"}, "parameters": {"type": "object", "maxProperties": 8}},
                    },
                },
            },
        },
        "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]}, {"type": "object", "required": ["type", "function"], "properties": {"type": {"const": "function"}, "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}]},
        "parallel_tool_calls": {"type": "boolean"},
        "response_format": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}}},
        "metadata": {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string", "maxLength": 512}},
        "store": {"type": "boolean"},
        "reasoning_effort": {"type": "string"},
    }
    # logprobs: top_logprobs needs logprobs true (checked by the server); left out of the
    # schema so every generated valid body is valid
    schema = {"type": "object", "required": ["model", "messages"], "properties": props, "additionalProperties": False}
    return {"/v1/chat/completions": {"post": _operation("createChatCompletion", "Chat completion (routed)", schema)}}


def completions_paths(settings: Settings) -> Paths:
    props = {
        **_common(settings),
        "model": _model_schema(settings),
        "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}]},
        "logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
        "echo": {"type": "boolean"},
        "suffix": {"type": ["string", "null"]},
    }
    schema = {"type": "object", "required": ["model", "prompt"], "properties": props, "additionalProperties": False}
    return {"/v1/completions": {"post": _operation("createCompletion", "Text completion (routed)", schema)}}


def _operation(op_id: str, summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": {"description": "a completion, or an SSE stream when stream is true", "content": {
            "application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}}}, **_ERRORS},
    }  # fmt: skip


def service_paths(settings: Settings) -> Paths:
    model_list = {"type": "object", "required": ["object", "data"], "properties": {"object": {"const": "list"}, "data": {"type": "array"}}}
    return {
        "/v1/models": {"get": {"operationId": "listModels", "summary": "Aliases and models", "responses": {"200": _json_ok("models", model_list), **_ERRORS}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "responses": {"200": _json_ok("alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness", "responses": {"200": _json_ok("ready"), "503": _json_ok("not ready")}}},
    }  # fmt: skip


def responses_paths(settings: Settings) -> Paths:
    # router/api/responses.py validates the items itself; this says the request's shape
    # without its every field (additional properties allowed), so it is not fuzzed from here
    schema = {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": _model_schema(settings),
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
            "instructions": {"type": "string"},
            "stream": {"type": "boolean"},
            "store": {"type": "boolean"},
            "previous_response_id": {"type": "string"},
            "max_output_tokens": {"type": "integer", "minimum": 1},
            "tools": {"type": "array", "items": {"type": "object"}},
        },
    }
    rid = [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    one = {"responses": {"200": _json_ok("the stored response"), **_ERRORS}, "parameters": rid}
    return {
        "/v1/responses": {"post": _operation("createResponse", "Responses API (over the routed chat pipeline)", schema)},
        "/v1/responses/{response_id}": {"get": {"operationId": "getResponse", **one}, "delete": {"operationId": "deleteResponse", **one}},
        "/v1/responses/{response_id}/input_items": {"get": {"operationId": "listInputItems", **one}},
    }


_ANTHROPIC_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {"type": "object", "required": ["type", "message"], "properties": {"type": {"type": "string"}, "message": {"type": "string"}}},
    },
}  # fmt: skip


def messages_paths(settings: Settings) -> Paths:
    # router/api/anthropic_request.py validates the blocks itself (and is fuzzed by
    # tests/router/api/test_fuzz_anthropic.py); this is the request's outer shape
    message = {"type": "object", "required": ["role", "content"], "properties": {
        "role": {"enum": ["user", "assistant"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}}
    base = {
        "model": _model_schema(settings),
        "messages": {"type": "array", "items": message},
        "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "tools": {"type": "array", "items": {"type": "object"}},
    }
    create = {"type": "object", "required": ["model", "messages", "max_tokens"], "properties": {
        **base, "max_tokens": {"type": "integer", "minimum": 1}, "stream": {"type": "boolean"},
        "stop_sequences": {"type": "array", "items": {"type": "string"}},
        "thinking": {"type": "object"}, "tool_choice": {"type": "object"}}}
    errors = {str(c): {"description": why, "content": {"application/json": {"schema": _ANTHROPIC_ERROR}}}
              for c, why in ((400, "invalid request"), (401, "missing or invalid API key"), (429, "rate limited"), (529, "overloaded"))}
    def op(op_id: str, summary: str, schema: dict[str, Any], ok: str) -> dict[str, Any]:
        return {"post": {"operationId": op_id, "summary": summary,
                         "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
                         "responses": {"200": _json_ok(ok), **errors}}}
    return {
        "/v1/messages": op("createMessage", "Anthropic Messages (over the routed chat pipeline)", create, "a message, or an SSE stream"),
        "/v1/messages/count_tokens": op("countTokens", "Anthropic token count (thinkgate's estimate)",
                                        {"type": "object", "required": ["model", "messages"], "properties": base}, "input_tokens"),
    }  # fmt: skip


_GOOGLE_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "status"], "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"}, "status": {"type": "string"}}}},
}  # fmt: skip


def gemini_paths(settings: Settings) -> Paths:
    # router/api/gemini/request.py validates contents and parts itself; this is the outer shape
    model = [{"name": "model", "in": "path", "required": True, "schema": {"enum": _models(settings)}}]
    generate = {"type": "object", "required": ["contents"], "properties": {
        "contents": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "systemInstruction": {"type": "object"}, "tools": {"type": "array", "items": {"type": "object"}},
        "toolConfig": {"type": "object"}, "generationConfig": {"type": "object"},
        "safetySettings": {"type": "array", "items": {"type": "object"}}}}
    errors = {str(c): {"description": why, "content": {"application/json": {"schema": _GOOGLE_ERROR}}}
              for c, why in ((400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (404, "NOT_FOUND"), (429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE"))}
    def op(op_id: str, summary: str, ok: str, streams: bool = False) -> dict[str, Any]:
        params = [*model, {"name": "alt", "in": "query", "schema": {"enum": ["sse", "json"]}}] if streams else model
        return {"post": {"operationId": op_id, "summary": summary, "parameters": params,
                         "requestBody": {"required": True, "content": {"application/json": {"schema": generate}}},
                         "responses": {"200": _json_ok(ok), **errors}}}
    get = {"operationId": "gemini.getModel", "parameters": model, "responses": {"200": _json_ok("a model"), **errors}}
    calls = {
        ":generateContent": ("generateContent", "Gemini generateContent (over the routed chat pipeline)", "a GenerateContentResponse", False),
        ":streamGenerateContent": ("streamGenerateContent", "Gemini streaming (SSE with alt=sse, else a JSON array)", "GenerateContentResponse objects", True),
        ":countTokens": ("countTokens", "Gemini token count (thinkgate's estimate)", "totalTokens", False),
    }
    paths: Paths = {
        "/v1beta/models": {"get": {"operationId": "gemini.listModels", "responses": {"200": _json_ok("models"), **errors}}},
        "/v1beta/models/{model}": {"get": get},
    }
    for version in ("v1beta", "v1"):  # google-genai >= 3 calls v1
        for suffix, (name, summary, ok, streams) in calls.items():
            paths[f"/{version}/models/{{model}}{suffix}"] = op(f"gemini.{version}.{name}", summary, ok, streams)
    return paths  # fmt: skip


def embeddings_paths(settings: Settings) -> Paths:
    strings = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    schema = {"type": "object", "required": ["model", "input"], "properties": {
        "model": {"type": "string"}, "input": strings, "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1}, "user": {"type": "string"}}}
    return {"/v1/embeddings": {"post": _operation("createEmbedding", "Embeddings (local MiniLM or a configured model)", schema)}}  # fmt: skip


# One entry per front end: add yours here (its paths are shown only when routed).
SECTIONS: tuple[Callable[[Settings], Paths], ...] = (
    chat_paths, completions_paths, service_paths, responses_paths, messages_paths, gemini_paths, embeddings_paths
)  # fmt: skip


def document(settings: Settings, served: Iterable[str] | None = None, sections: Iterable[Callable[[Settings], Paths]] = SECTIONS) -> dict[str, Any]:
    """The OpenAPI document; `served`: the app's route paths (None: every section's)."""
    paths: Paths = {}
    for section in sections:
        paths.update(section(settings))
    if served is not None:
        keep = set(served)
        paths = {p: v for p, v in paths.items() if p in keep}
    return {
        "openapi": "3.1.0",
        "info": {"title": "thinkgate", "version": "1", "description": "OpenAI-compatible gateway that routes each prompt to a fast or a reasoning model."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},  # the same key, Anthropic's way
                "googApiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},  # and Google's
            },
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}, {"googApiKey": []}],
    }
