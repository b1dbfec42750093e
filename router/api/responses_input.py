"""Responses API request -> the pipeline's chat request.

`parse(raw, headers)` validates a POST /v1/responses body and translates it:
`input` (a string or a list of items) into chat messages, `instructions` into
a leading system message, flat function tools into chat tools, `text.format`
into `response_format`, `max_output_tokens` into `max_tokens`, `reasoning.effort`
into `reasoning_effort`. `reasoning` input items are dropped: the thinking of an
earlier turn is not something a chat upstream accepts as input. What the
response object echoes back (tools, text, metadata, ...) is kept in `echo`.

This module checks the request's top-level fields and assembles the result; the
translations it calls live beside it: responses_items.py (input items -> chat
messages), responses_tools.py (tools, tool_choice, text.format) and
responses_fields.py (the shared field checks).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.api.protocol import parse_controls
from router.api.responses_fields import bad, check_type
from router.api.responses_items import input_to_messages, item_id
from router.api.responses_tools import HOSTED_TOOLS, chat_response_format, chat_tool_choice, chat_tools
from router.errors import InvalidRequest
from router.types import ChatRequest

# item_id and input_to_messages keep their old import path (responses_output.py uses item_id)
__all__ = ["ParsedResponses", "input_to_messages", "item_id", "parse"]

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
    "client_metadata": (dict,),
    "max_tool_calls": (int,),
    "top_logprobs": (int,),
    "background": (bool,),
    "thinkgate": (dict,),
}
_UNSUPPORTED = {
    "conversation": "conversations are not supported; use previous_response_id",
    "prompt": "stored prompt templates are not supported",
}
_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}
# `include` values this front end honours; the others ask for data of hosted tools or of
# OpenAI's own storage, which a chat upstream never produces: accepted and recorded
_INCLUDE_HONOURED = {"reasoning.encrypted_content"}
# fields that do not change the answer and that a chat upstream does not take: accepted,
# left out of the upstream request and named in the decision record
# (max_tool_calls caps calls of hosted tools, which never run here)
_DROPPED = ("client_metadata", "prompt_cache_key", "service_tier", "safety_identifier", "max_tool_calls")


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
    encrypted_reasoning: bool = False  # include: reasoning.encrypted_content
    namespaces: dict[str, str] = field(default_factory=dict)  # flattened function name -> its namespace
    dropped: list[str] = field(default_factory=list)  # accepted, not sent upstream (the decision record)
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
            dropped=list(self.dropped),
        )


# -- the request ----------------------------------------------------------------------


def parse(
    raw: bytes, headers: Mapping[str, str], parsed: dict[str, Any] | None = None, *, hosted_tools: str = "drop"
) -> ParsedResponses:
    """`hosted_tools`: drop | refuse, for hosted tools (web_search, ...) in `tools`."""
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
            raise bad(f"'{name}': {_UNSUPPORTED[name]}", name, "unsupported_parameter")
        if name not in _FIELDS:
            raise bad(f"Unrecognized request argument supplied: {name}", name, "unsupported_parameter")
        if value is not None:
            check_type(name, value, _FIELDS[name])
    d = {k: v for k, v in data.items() if v is not None}
    for name in ("model", "input"):
        if name not in d and not (name == "input" and d.get("previous_response_id")):
            raise bad(f"'{name}' is required", name, "missing_field")
    model = d["model"]
    if not model.strip():
        raise bad("'model' must not be empty", "model")
    if d.get("background"):
        raise bad("'background': background responses are not supported", "background", "unsupported_value")

    items, messages = input_to_messages(d.get("input", []))
    body: dict[str, Any] = {}
    echo: dict[str, Any] = {}
    if "temperature" in d:
        if not 0 <= d["temperature"] <= 2:
            raise bad(f"'temperature' must be between 0 and 2, got {d['temperature']}", "temperature")
        body["temperature"] = echo["temperature"] = d["temperature"]
    if "top_p" in d:
        if not 0 <= d["top_p"] <= 1:
            raise bad(f"'top_p' must be between 0 and 1, got {d['top_p']}", "top_p")
        body["top_p"] = echo["top_p"] = d["top_p"]
    if "max_output_tokens" in d:
        if d["max_output_tokens"] < 1:
            raise bad("'max_output_tokens' must be at least 1", "max_output_tokens")
        body["max_tokens"] = echo["max_output_tokens"] = d["max_output_tokens"]
    if "top_logprobs" in d:
        if not 0 <= d["top_logprobs"] <= 20:
            raise bad("'top_logprobs' must be between 0 and 20", "top_logprobs")
        echo["top_logprobs"] = d["top_logprobs"]
        if d["top_logprobs"]:
            body["logprobs"], body["top_logprobs"] = True, d["top_logprobs"]
    tools = d.get("tools") or []
    converted = chat_tools(tools, hosted_tools)
    dropped = list(converted.dropped)
    if converted.tools:
        body["tools"] = converted.tools
    # the response names the tools its answer was made with: not the hosted ones dropped
    echo["tools"] = [t for t in tools if not (isinstance(t, dict) and t.get("type") in HOSTED_TOOLS)]
    if "tool_choice" in d:
        choice = chat_tool_choice(d["tool_choice"])
        echo["tool_choice"] = d["tool_choice"]
        if converted.tools:
            body["tool_choice"] = choice
        elif choice != "none":  # only dropped hosted tools: nothing left to choose from
            dropped.append("tool_choice")
    if "parallel_tool_calls" in d:
        echo["parallel_tool_calls"] = d["parallel_tool_calls"]
        if converted.tools:  # chat APIs refuse parallel_tool_calls without tools
            body["parallel_tool_calls"] = d["parallel_tool_calls"]
    text = d.get("text") or {}
    fmt = chat_response_format(text)
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
                raise bad("'reasoning.effort' must be one of " + ", ".join(sorted(_EFFORTS)), "reasoning.effort")
            body["reasoning_effort"] = effort
        s = reasoning.get("summary", reasoning.get("generate_summary"))
        if s is not None and s not in ("auto", "concise", "detailed"):
            raise bad("'reasoning.summary' must be auto, concise or detailed", "reasoning.summary")
        summary = s is not None
        echo["reasoning"] = {"effort": effort, "summary": s}
    if "user" in d:
        body["user"] = echo["user"] = d["user"]
    if "metadata" in d:
        meta = d["metadata"]
        if len(meta) > 16 or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in meta.items()
        ):
            raise bad("'metadata' must hold up to 16 string keys (64 chars) and string values (512 chars)", "metadata")
        echo["metadata"] = meta
    truncation = d.get("truncation")
    if truncation is not None and truncation not in ("auto", "disabled"):
        raise bad("'truncation' must be auto or disabled", "truncation")
    include = d.get("include") or []
    if not all(isinstance(x, str) for x in include):
        raise bad("'include' must be an array of strings", "include", "invalid_type")
    dropped += [f"include:{x}" for x in include if x not in _INCLUDE_HONOURED]
    for key in ("include", "service_tier", "safety_identifier", "prompt_cache_key", "truncation"):
        if key in d:
            echo[key] = d[key]
    dropped += [key for key in _DROPPED if key in d]
    stream_options = d.get("stream_options") or {}
    if stream_options and not d.get("stream"):
        raise bad("'stream_options' is only allowed with stream: true", "stream_options")
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
        encrypted_reasoning="reasoning.encrypted_content" in include,
        namespaces=converted.namespaces,
        dropped=dropped,
        controls=parse_controls(headers, d.get("thinkgate")),
    )
