"""Responses API request -> the pipeline's chat request.

`parse(raw, headers)` validates a POST /v1/responses body and translates it:
`input` (a string or a list of items) into chat messages, `instructions` into
a leading system message, flat function tools into chat tools, `text.format`
into `response_format`, `max_output_tokens` into `max_tokens`, `reasoning.effort`
into `reasoning_effort`. `reasoning` input items are dropped: the thinking of an
earlier turn is not something a chat upstream accepts as input. What the
response object echoes back (tools, text, metadata, ...) is kept in `echo`.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.api.protocol import parse_controls
from router.errors import InvalidRequest
from router.types import ChatRequest

# field -> accepted python types; None values are treated as absent (the SDKs send them)
_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "input": (str, list),
    "instructions": (str,),
    "tools": (list,),
    "tool_choice": (str, dict),
    "text": (dict,),
    "max_output_tokens": (int,),
    "reasoning": (dict,),
    "temperature": (int, float),
    "top_p": (int, float),
    "metadata": (dict,),
    "user": (str,),
    "parallel_tool_calls": (bool,),
    "store": (bool,),
    "stream": (bool,),
    "stream_options": (dict,),
    "previous_response_id": (str,),
    "include": (list,),
    "truncation": (str,),
    "service_tier": (str,),
    "safety_identifier": (str,),
    "prompt_cache_key": (str,),
    "top_logprobs": (int,),
    "background": (bool,),
    "thinkgate": (dict,),
}
_UNSUPPORTED = {
    "conversation": "conversations are not supported; use previous_response_id",
    "prompt": "stored prompt templates are not supported",
    "max_tool_calls": "max_tool_calls is not supported",
}
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}
_TOOL_CHOICES = {"auto", "none", "required"}


@dataclass
class ParsedResponses:
    """A validated request, before the history of `previous_response_id` is known."""

    model: str
    input_items: list[dict[str, Any]]  # this turn's input as Responses items, each with an id
    messages: list[dict[str, Any]]  # the same as chat messages (no instructions)
    instructions: str | None
    chat_body: dict[str, Any]  # chat fields besides model/messages
    echo: dict[str, Any]  # request fields the response object repeats
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    summary: bool = False  # reasoning.summary asked for: the thinking also goes out as summary
    controls: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def chat_request(self, history: list[dict[str, Any]]) -> ChatRequest:
        messages = list(history) + self.messages
        if self.instructions is not None:
            # instructions apply to this response only, not to the stored history
            messages = [{"role": "system", "content": self.instructions}, *messages]
        if not messages:
            raise InvalidRequest("'input' must not be empty", param="input", code="invalid_value")
        body = {"model": self.model, "messages": messages, **self.chat_body}
        return ChatRequest(
            endpoint="chat",
            alias=self.model,
            body=body,
            messages=messages,
            stream=self.stream,
            include_usage=self.stream,  # the final event carries usage
            controls=self.controls,
        )


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _bad(msg: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(msg, param=param, code=code)


def _typename(types: tuple[type, ...]) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return " or ".join(dict.fromkeys(names.get(t, "value") for t in types))


def _check_type(name: str, value: Any, types: tuple[type, ...]) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise _bad(f"'{name}' must be {_typename(types)}", name, "invalid_type")


def _str(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise _bad(
            f"'{where}.{key}' must be a string", f"{where}.{key}", "invalid_type" if v is not None else "missing_field"
        )
    return v


# -- input items -> chat messages ------------------------------------------------------


def _content_parts(content: Any, where: str, role: str) -> tuple[list[dict[str, Any]], Any]:
    """Responses content -> (normalised Responses parts, chat content)."""
    if isinstance(content, str):
        if role == "assistant":
            return [{"type": "output_text", "text": content, "annotations": []}], content
        return [{"type": "input_text", "text": content}], content
    if not isinstance(content, list):
        raise _bad(
            f"'{where}.content' must be a string or an array of content parts", f"{where}.content", "invalid_type"
        )
    parts: list[dict[str, Any]] = []
    chat: list[dict[str, Any]] = []

    def text_part(t: str) -> dict[str, Any]:
        # stored in the SDK's item shapes: assistant parts are output_text, the rest input_text
        return (
            {"type": "output_text", "text": t, "annotations": []}
            if role == "assistant"
            else {"type": "input_text", "text": t}
        )

    for j, p in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(p, dict) or not isinstance(p.get("type"), str):
            raise _bad(f"'{at}' must be an object with a 'type'", at, "invalid_type")
        kind = p["type"]
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            text = _str(p, "text", at)
            assert text is not None
            parts.append(text_part(text))
            chat.append({"type": "text", "text": text})
        elif kind == "refusal":
            text = _str(p, "refusal", at)
            assert text is not None
            parts.append({"type": "refusal", "refusal": text} if role == "assistant" else text_part(text))
            chat.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = p.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(
                    f"'{at}.image_url' must be a URL or data URL (file_id images are not supported)", f"{at}.image_url"
                )
            image: dict[str, Any] = {"url": url}
            detail = p.get("detail")
            if detail is not None:
                if detail not in ("auto", "low", "high", "original"):
                    raise _bad(f"'{at}.detail' must be auto, low or high", f"{at}.detail")
                if detail != "original":
                    image["detail"] = detail
            parts.append({"type": "input_image", "image_url": url, "detail": detail or "auto"})
            chat.append({"type": "image_url", "image_url": image})
        else:
            raise _bad(
                f"'{at}.type' {kind!r} is not supported (use input_text, output_text or input_image)",
                at,
                "unsupported_value",
            )
    if role == "assistant" or all(c["type"] == "text" for c in chat):
        # text-only content as one string: the form every chat upstream accepts
        if any(c["type"] != "text" for c in chat):
            raise _bad(f"'{where}.content': assistant messages take text only", f"{where}.content")
        return parts, "".join(c["text"] for c in chat)
    return parts, chat


def _output_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, p in enumerate(value):
            if not isinstance(p, dict) or p.get("type") not in ("input_text", "output_text", "text"):
                raise _bad(f"'{where}[{j}]' must be an input_text part", f"{where}[{j}]", "unsupported_value")
            texts.append(_str(p, "text", f"{where}[{j}]"))
        return "".join(t for t in texts if t)
    raise _bad(f"'{where}' must be a string or an array of input_text parts", where, "invalid_type")


def input_to_messages(items: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Responses `input` -> (Responses items with ids, chat messages)."""
    if isinstance(items, str):
        return [{"id": item_id("msg"), "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": items}]}], [{"role": "user", "content": items}]  # fmt: skip
    out_items: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"'{where}' must be an object", where, "invalid_type")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str) or role not in _ROLES:
                raise _bad(f"'{where}.role' must be one of user, assistant, system, developer", f"{where}.role")
            if "content" not in item:
                raise _bad(f"'{where}.content' is required", f"{where}.content", "missing_field")
            parts, content = _content_parts(item["content"], where, role)
            status = (
                item.get("status") if item.get("status") in ("in_progress", "completed", "incomplete") else "completed"
            )
            out_items.append(
                {"id": _id(item, "msg"), "type": "message", "role": role, "status": status, "content": parts}
            )
            messages.append({"role": _ROLES[role], "content": content})
        elif kind == "function_call":
            call_id, name = _str(item, "call_id", where), _str(item, "name", where)
            arguments = _str(item, "arguments", where)
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            prev = messages[-1] if messages else None
            if prev is not None and prev["role"] == "assistant":
                # parallel calls, and text followed by calls, are one chat assistant turn
                prev.setdefault("tool_calls", []).append(call)
                if not prev.get("content"):
                    prev["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            out_items.append(_call_item(item, call_id, name, arguments))
        elif kind == "function_call_output":
            call_id = _str(item, "call_id", where)
            if "output" not in item:
                raise _bad(f"'{where}.output' is required", f"{where}.output", "missing_field")
            output = _output_text(item["output"], f"{where}.output")
            out_items.append({"id": _id(item, "fco"), "type": "function_call_output", "call_id": call_id,
                              "output": item["output"], "status": "completed"})  # fmt: skip
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            # an earlier turn's thinking: kept in the item list, never sent upstream as text
            out_items.append(_reasoning_item(item, where))
        elif kind == "item_reference":
            raise _bad(
                f"'{where}': item_reference is not supported; send the item itself or use previous_response_id",
                where,
                "unsupported_value",
            )
        else:
            raise _bad(
                f"'{where}.type' {kind!r} is not supported (message, function_call, function_call_output, reasoning)",
                f"{where}.type",
                "unsupported_value",
            )
    return out_items, messages


def _id(item: dict[str, Any], prefix: str) -> str:
    # the client's own item id when it sent one, so input_items lists what it knows
    v = item.get("id")
    return v if isinstance(v, str) and v else item_id(prefix)


def _reasoning_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": _id(item, "rs"), "type": "reasoning"}
    for key, kind, required in (("summary", "summary_text", True), ("content", "reasoning_text", False)):
        parts = item.get(key)
        if parts is None and not required:
            continue
        if not isinstance(parts, list) or not all(
            isinstance(x, dict) and isinstance(x.get("text"), str) for x in parts
        ):
            raise _bad(f"'{where}.{key}' must be an array of {kind} parts", f"{where}.{key}", "invalid_type")
        out[key] = [{"type": kind, "text": x["text"]} for x in parts]
    if isinstance(item.get("encrypted_content"), str):
        out["encrypted_content"] = item["encrypted_content"]
    return out


def _call_item(item: dict[str, Any], call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": _id(item, "fc"), "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}  # fmt: skip


# -- tools, tool_choice, text.format ------------------------------------------------------


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, t in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(t, dict):
            raise _bad(f"'{where}' must be an object", where, "invalid_type")
        if t.get("type") != "function":
            raise _bad(
                f"'{where}.type' {t.get('type')!r} is not supported: only function tools are",
                f"{where}.type",
                "unsupported_value",
            )
        name = _str(t, "name", where)
        fn: dict[str, Any] = {"name": name}
        desc = t.get("description")
        if desc is not None:
            if not isinstance(desc, str):
                raise _bad(f"'{where}.description' must be a string", f"{where}.description", "invalid_type")
            fn["description"] = desc
        params = t.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise _bad(
                    f"'{where}.parameters' must be an object (a JSON schema)", f"{where}.parameters", "invalid_type"
                )
            fn["parameters"] = params
        strict = t.get("strict")
        if strict is not None:
            if not isinstance(strict, bool):
                raise _bad(f"'{where}.strict' must be a boolean", f"{where}.strict", "invalid_type")
            fn["strict"] = strict
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _bad("'tool_choice' must be auto, none, required or a function", "tool_choice")
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad(
        "'tool_choice' must be auto, none, required or {'type': 'function', 'name': ...}",
        "tool_choice",
        "unsupported_value",
    )


def _response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    verbosity = text.get("verbosity")
    if verbosity is not None and verbosity not in ("low", "medium", "high"):
        raise _bad("'text.verbosity' must be low, medium or high", "text.verbosity")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise _bad("'text.format' must be an object", "text.format", "invalid_type")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        name = _str(fmt, "name", "text.format")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _bad("'text.format.schema' must be an object (a JSON schema)", "text.format.schema", "invalid_type")
        js: dict[str, Any] = {"name": name, "schema": schema}
        for key, types in (("strict", (bool,)), ("description", (str,))):
            if fmt.get(key) is not None:
                _check_type(f"text.format.{key}", fmt[key], types)
                js[key] = fmt[key]
        return {"type": "json_schema", "json_schema": js}
    raise _bad("'text.format.type' must be text, json_object or json_schema", "text.format.type")


# -- the request ----------------------------------------------------------------------


def parse(raw: bytes, headers: Mapping[str, str], parsed: dict[str, Any] | None = None) -> ParsedResponses:
    if parsed is not None:
        data: Any = parsed
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidRequest("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    for name, value in data.items():
        if name in _UNSUPPORTED:
            if value is None:
                continue
            raise _bad(f"'{name}': {_UNSUPPORTED[name]}", name, "unsupported_parameter")
        if name not in _FIELDS:
            raise _bad(f"Unrecognized request argument supplied: {name}", name, "unsupported_parameter")
        if value is not None:
            _check_type(name, value, _FIELDS[name])
    d = {k: v for k, v in data.items() if v is not None}
    for name in ("model", "input"):
        if name not in d and not (name == "input" and d.get("previous_response_id")):
            raise _bad(f"'{name}' is required", name, "missing_field")
    model = d["model"]
    if not model.strip():
        raise _bad("'model' must not be empty", "model")
    if d.get("background"):
        raise _bad("'background': background responses are not supported", "background", "unsupported_value")

    items, messages = input_to_messages(d.get("input", []))
    body: dict[str, Any] = {}
    echo: dict[str, Any] = {}
    if "temperature" in d:
        if not 0 <= d["temperature"] <= 2:
            raise _bad(f"'temperature' must be between 0 and 2, got {d['temperature']}", "temperature")
        body["temperature"] = echo["temperature"] = d["temperature"]
    if "top_p" in d:
        if not 0 <= d["top_p"] <= 1:
            raise _bad(f"'top_p' must be between 0 and 1, got {d['top_p']}", "top_p")
        body["top_p"] = echo["top_p"] = d["top_p"]
    if "max_output_tokens" in d:
        if d["max_output_tokens"] < 1:
            raise _bad("'max_output_tokens' must be at least 1", "max_output_tokens")
        body["max_tokens"] = echo["max_output_tokens"] = d["max_output_tokens"]
    if "top_logprobs" in d:
        if not 0 <= d["top_logprobs"] <= 20:
            raise _bad("'top_logprobs' must be between 0 and 20", "top_logprobs")
        echo["top_logprobs"] = d["top_logprobs"]
        if d["top_logprobs"]:
            body["logprobs"], body["top_logprobs"] = True, d["top_logprobs"]
    tools = d.get("tools") or []
    if tools:
        body["tools"] = _tools(tools)
    echo["tools"] = tools
    if "tool_choice" in d:
        body["tool_choice"] = _tool_choice(d["tool_choice"])
        echo["tool_choice"] = d["tool_choice"]
    if "parallel_tool_calls" in d:
        echo["parallel_tool_calls"] = d["parallel_tool_calls"]
        if tools:  # chat APIs refuse parallel_tool_calls without tools
            body["parallel_tool_calls"] = d["parallel_tool_calls"]
    text = d.get("text") or {}
    fmt = _response_format(text)
    if fmt is not None:
        body["response_format"] = fmt
    echo["text"] = {
        "format": text.get("format") or {"type": "text"},
        **({"verbosity": text["verbosity"]} if "verbosity" in text else {}),
    }
    reasoning = d.get("reasoning") or {}
    summary = False
    if reasoning:
        effort = reasoning.get("effort")
        if effort is not None:
            if not isinstance(effort, str) or effort not in _EFFORTS:
                raise _bad("'reasoning.effort' must be one of " + ", ".join(sorted(_EFFORTS)), "reasoning.effort")
            body["reasoning_effort"] = effort
        s = reasoning.get("summary", reasoning.get("generate_summary"))
        if s is not None and s not in ("auto", "concise", "detailed"):
            raise _bad("'reasoning.summary' must be auto, concise or detailed", "reasoning.summary")
        summary = s is not None
        echo["reasoning"] = {"effort": effort, "summary": s}
    if "user" in d:
        body["user"] = echo["user"] = d["user"]
    if "metadata" in d:
        meta = d["metadata"]
        if len(meta) > 16 or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in meta.items()
        ):
            raise _bad("'metadata' must hold up to 16 string keys (64 chars) and string values (512 chars)", "metadata")
        echo["metadata"] = meta
    truncation = d.get("truncation")
    if truncation is not None and truncation not in ("auto", "disabled"):
        raise _bad("'truncation' must be auto or disabled", "truncation")
    for key in ("include", "service_tier", "safety_identifier", "prompt_cache_key", "truncation"):
        # accepted for compatibility: they change nothing a chat upstream can do
        if key in d:
            if key == "include" and not all(isinstance(x, str) for x in d[key]):
                raise _bad("'include' must be an array of strings", "include", "invalid_type")
            echo[key] = d[key]
    stream_options = d.get("stream_options") or {}
    if stream_options and not d.get("stream"):
        raise _bad("'stream_options' is only allowed with stream: true", "stream_options")
    if d.get("instructions") is not None:
        echo["instructions"] = d["instructions"]
    return ParsedResponses(
        model=model,
        input_items=items,
        messages=messages,
        instructions=d.get("instructions"),
        chat_body=body,
        echo=echo,
        stream=bool(d.get("stream", False)),
        store=bool(d.get("store", True)),
        previous_response_id=d.get("previous_response_id"),
        summary=summary,
        controls=parse_controls(headers, d.get("thinkgate")),
    )
