"""Anthropic Messages request -> the OpenAI chat body the pipeline takes.

Validated with Anthropic's field names (so an error names what the client sent),
then handed to router.api.protocol.parse_request like any chat body: routing, the
cache, limits and the upstreams see one request shape whatever the front end.

What maps to what:
  system (string | text blocks)        -> a leading system message
  text / image blocks                  -> text / image_url parts (base64 -> data: URL)
  assistant tool_use blocks            -> assistant tool_calls (input -> JSON arguments)
  user tool_result blocks              -> role "tool" messages, before the user's other blocks
  thinking / redacted_thinking blocks  -> dropped (they are the model's, not the conversation's)
  tools[].input_schema                 -> function tools; tool_choice auto/any/tool/none
  stop_sequences, max_tokens, temperature, top_p, top_k, metadata.user_id -> their OpenAI fields
  output_config.format (json_schema)   -> response_format
  thinking {type: enabled, budget_tokens} -> the DEER thinking budget (router.types.DeerControl);
    adaptive / between_tools: thinking blocks, DEER's own budget
  role "system" turns inside messages  -> appended to the system prompt, in their order
    (Claude Code sends its environment block so; strict upstreams want one leading system)
  context_management.edits             -> clear_thinking: honoured by construction (earlier
    thinking never goes upstream); clear_tool_uses: applied to the history (context.py)
  tools[].defer_loading                -> held back until a tool_reference (the client's tool
    search) names the tool, as Anthropic loads deferred tools
  tools[].strict                       -> the function's strict flag

The issue-22 rule for what a client sends: honour what can be honoured; accept, drop
before the upstream and name in `Translated.dropped` (-> the decision record) what does
not change the answer (cache_control, display options, betas, client ids); refuse only
what would change it, in Anthropic's error shape.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from router.api.anthropic.context import clear_tool_uses, edits_of
from router.api.anthropic.fields import bad as _bad
from router.api.anthropic.tools import referenced_tools, tool_choice, tools_of

# Anthropic fields accepted; everything else is refused, as Anthropic's API does.
_FIELDS = {
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "metadata", "thinking", "output_config", "thinkgate", "context_management",
}  # fmt: skip
# Anthropic-side knobs with no upstream meaning here (prompt caching, routing to a region
# or speed tier, the account's ids): accepted and ignored, so current SDKs work unchanged.
_IGNORED = {"cache_control", "service_tier", "inference_geo", "speed", "diagnostics", "user_profile_id", "workspace_id"}
_REFUSED = {"container": "code-execution containers are not supported", "mcp_servers": "MCP servers are not supported"}
_MAX_STOP = 4  # what OpenAI-compatible upstreams accept
# every display Anthropic documents: "updates" is Claude Code 2.x's; all are about how
# thinking is shown, never the answer
_DISPLAYS = {"summarized", "omitted", "updates", "full"}


@dataclass
class Translated:
    body: dict[str, Any]  # an OpenAI chat body (plus `thinkgate` controls when given)
    thinking: bool = False  # the client asked for thinking blocks
    omit_thinking: bool = False  # display "omitted": blocks with a signature and no text
    budget_tokens: int | None = None
    stop_sequences: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # accepted, not sent upstream (the decision record)


def _number(data: dict[str, Any], name: str, lo: float, hi: float | None) -> float | None:
    v = data.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(f"{name}: Input should be a number", name)
    if v < lo or (hi is not None and v > hi):
        rng = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        raise _bad(f"{name}: must be {rng}, got {v}", name)
    return v


def _int(data: dict[str, Any], name: str, lo: int) -> int | None:
    v = data.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"{name}: Input should be a valid integer", name)
    if v < lo:
        raise _bad(f"{name}: must be at least {lo}, got {v}", name)
    return v


def _text_blocks(value: Any, where: str) -> str:
    """A string, or a list of text blocks joined (system prompts, tool results)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _bad(f"{where}: Input should be a string or a list of text blocks", where)
    out = []
    for i, b in enumerate(value):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise _bad(f"{where}.{i}: Input should be a text block", where)
        out.append(b["text"])
    return "\n\n".join(out)


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source")
    if not isinstance(src, dict):
        raise _bad(f"{where}.source: Field required", where)
    kind = src.get("type")
    if kind == "base64":
        media, data = src.get("media_type"), src.get("data")
        if not isinstance(media, str) or not media.startswith("image/") or not isinstance(data, str) or not data:
            raise _bad(f"{where}.source: base64 images need 'media_type' (image/...) and 'data'", where)
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        url = src.get("url")
        if not isinstance(url, str) or not url:
            raise _bad(f"{where}.source.url: Field required", where)
    else:
        raise _bad(f"{where}.source.type: images are supported as 'base64' or 'url', not {kind!r}", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_use_id: Field required", where)
    content = block.get("content", "")
    if isinstance(content, list):
        parts = []
        for i, b in enumerate(content):
            if isinstance(b, dict) and b.get("type") == "image":
                # OpenAI's tool messages carry text only
                raise _bad(f"{where}.content.{i}: images inside tool_result are not supported", where)
            if isinstance(b, dict) and b.get("type") == "tool_reference" and isinstance(b.get("tool_name"), str):
                # a tool search's answer: the named deferred tool is offered from now on (tools_of)
                parts.append(f"Tool {b['tool_name']} is now available.")
                continue
            if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
                raise _bad(f"{where}.content.{i}: Input should be a text block", where)
            parts.append(b["text"])
        text = "\n\n".join(parts)
    elif isinstance(content, str):
        text = content
    else:
        raise _bad(f"{where}.content: Input should be a string or a list of blocks", where)
    if block.get("is_error") is True:
        text = f"[tool error] {text}"  # OpenAI has no is_error: say it in the content
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tool_use(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name, args = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise _bad(f"{where}: tool_use blocks need 'id' and 'name'", where)
    if not isinstance(args, dict):
        raise _bad(f"{where}.input: Input should be an object", where)
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
    }


def _message(m: Any, i: int) -> list[dict[str, Any]]:
    where = f"messages.{i}"
    if not isinstance(m, dict):
        raise _bad(f"{where}: Input should be an object", where)
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise _bad(f"{where}.role: Input should be 'user', 'assistant' or 'system'", where)
    content = m.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content: Field required (a string or a list of content blocks)", where)
    if not content:
        raise _bad(f"{where}.content: a message needs at least one content block", where)
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    tool_msgs: list[dict[str, Any]] = []
    for j, b in enumerate(content):
        bw = f"{where}.content.{j}"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            if not isinstance(b.get("text"), str):
                raise _bad(f"{bw}.text: Input should be a string", bw)
            parts.append({"type": "text", "text": b["text"]})
        elif kind == "image" and role == "user":
            parts.append(_image(b, bw))
        elif kind == "tool_result" and role == "user":
            tool_msgs.append(_tool_result(b, bw))
        elif kind == "tool_use" and role == "assistant":
            tool_calls.append(_tool_use(b, bw))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # earlier turns' thinking is not sent upstream again
        else:
            raise _bad(f"{bw}: content block type {kind!r} is not supported in a {role} message", bw)
    out: list[dict[str, Any]] = list(tool_msgs)  # OpenAI wants tool results right after the call
    if role == "assistant":
        if parts or tool_calls:
            text = "".join(p["text"] for p in parts)
            # "" rather than null beside tool_calls: OpenAI takes either, llama.cpp's server
            # (its pydantic model and the chat templates it renders) only a string
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                msg["tool_calls"] = tool_calls
            out.append(msg)
    elif parts or not tool_msgs:
        only_text = all(p["type"] == "text" for p in parts)
        out.append(
            {"role": "user", "content": "".join(p["text"] for p in parts) if only_text and len(parts) == 1 else parts}
        )
    return out


def _thinking(data: dict[str, Any], max_tokens: int) -> tuple[bool, int | None, bool]:
    """(thinking blocks wanted, budget, omitted). `adaptive` and `between_tools` leave
    the budget to DEER's configured share of max_tokens."""
    th = data.get("thinking")
    if th is None:
        return False, None, False
    if not isinstance(th, dict) or th.get("type") not in ("enabled", "disabled", "adaptive", "between_tools"):
        raise _bad("thinking.type: Input should be 'enabled', 'adaptive', 'between_tools' or 'disabled'", "thinking")
    if th["type"] == "disabled":
        return False, None, False
    display = th.get("display")
    if display is not None and not isinstance(display, str):
        raise _bad("thinking.display: Input should be a string", "thinking")
    if th["type"] != "enabled":
        return True, None, display == "omitted"
    budget = th.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise _bad("thinking.budget_tokens: Field required (a positive integer)", "thinking")
    if budget >= max_tokens:
        raise _bad("thinking.budget_tokens: must be less than max_tokens", "thinking")
    return True, budget, display == "omitted"


def _output_config(oc: Any, body: dict[str, Any]) -> None:
    """`format` (a JSON schema) becomes OpenAI's response_format; `effort` is not
    mapped (the route decides how much thinking a prompt gets)."""
    if not isinstance(oc, dict):
        raise _bad("output_config: Input should be an object", "output_config")
    fmt = oc.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise _bad("output_config.format: Input should be {type: 'json_schema', schema: {...}}", "output_config")
    body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


def messages_of(data: dict[str, Any], messages: list[Any] | None = None) -> list[dict[str, Any]]:
    """The OpenAI messages of an Anthropic body (system first); also for count_tokens.
    `messages`: the body's, after context-management edits (default: as sent).

    A `role: "system"` turn inside `messages` is appended to the system prompt where it
    stands among the system parts: many upstreams (llama.cpp's chat templates, vLLM's
    for several models) refuse a system message after the first turn."""
    if messages is None:
        messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: Field required (a non-empty list)", "messages")
    system: list[str] = []
    if data.get("system") is not None:
        text = _text_blocks(data["system"], "system")
        if text:
            system.append(text)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "system":
            where = f"messages.{i}.content"
            if "content" not in m:
                raise _bad(f"{where}: Field required (a string or a list of text blocks)", where)
            text = _text_blocks(m["content"], where)
            if text:
                system.append(text)
            continue
        out.extend(_message(m, i))
    if not out:
        raise _bad("messages: needs at least one user or assistant turn", "messages")
    if system:
        out.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return out


def check_model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model: Field required", "model")
    return model


def _uses_cache_control(data: dict[str, Any]) -> bool:
    """Whether any block sets cache_control (system, messages' blocks; tools are counted
    by tools_of): Anthropic's prompt caching, which an OpenAI upstream does by itself."""
    messages = data.get("messages")
    turns = messages if isinstance(messages, list) else ()  # not a list: messages_of answers the 400
    for part in (data.get("system"), *(m.get("content") for m in turns if isinstance(m, dict))):
        if isinstance(part, list) and any(isinstance(b, dict) and "cache_control" in b for b in part):
            return True
    return False


def translate(data: Any) -> Translated:
    if not isinstance(data, dict):
        raise _bad("the request body must be a JSON object")
    dropped: list[str] = []
    for name in data:
        if name in _REFUSED and data[name] is not None:
            raise _bad(f"{name}: {_REFUSED[name]}", name)
        if name not in _FIELDS and name not in _IGNORED and name not in _REFUSED:
            raise _bad(f"{name}: Extra inputs are not permitted", name)
        if name in _IGNORED:
            dropped.append(name)
    model = check_model(data)
    max_tokens = _int(data, "max_tokens", 1)
    if max_tokens is None:  # required, as in Anthropic's API
        raise _bad("max_tokens: Field required", "max_tokens")
    if not isinstance(data.get("stream", False), bool):
        raise _bad("stream: Input should be a valid boolean", "stream")
    messages = data.get("messages")
    if data.get("context_management") is not None:
        for edit in edits_of(data["context_management"]):
            if edit["type"].startswith("clear_thinking_"):
                # honoured by construction: no earlier turn's thinking is sent upstream
                dropped.append("context_management.clear_thinking")
            elif isinstance(messages, list):
                messages, n = clear_tool_uses(messages, edit)
                if n:
                    dropped.append(f"context_management.clear_tool_uses: {n} tool results")
    if _uses_cache_control({"system": data.get("system"), "messages": messages}) and "cache_control" not in dropped:
        dropped.append("cache_control")
    body: dict[str, Any] = {"model": model, "messages": messages_of(data, messages), "max_tokens": max_tokens}
    for name, lo, hi in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        v = _number(data, name, lo, hi)
        if v is not None:
            body[name] = v
    top_k = _int(data, "top_k", 0)
    if top_k is not None:
        body["top_k"] = top_k
    stops = data.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise _bad("stop_sequences: Input should be a list of non-empty strings", "stop_sequences")
        if len(stops) > _MAX_STOP:
            raise _bad(f"stop_sequences: at most {_MAX_STOP} are supported", "stop_sequences")
        if stops:
            body["stop"] = list(stops)
    if data.get("tools") is not None:
        loaded = referenced_tools(messages) if isinstance(messages, list) else set()
        tools = tools_of(data["tools"], loaded, dropped)
        if tools:
            body["tools"] = tools
    if data.get("tool_choice") is not None:
        tool_choice(data["tool_choice"], body)
        if "tools" not in body:
            body.pop("tool_choice", None)  # OpenAI refuses tool_choice without tools
            body.pop("parallel_tool_calls", None)
    meta = data.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise _bad("metadata: Input should be an object", "metadata")
        user = meta.get("user_id")
        if user is not None and not isinstance(user, str):
            raise _bad("metadata.user_id: Input should be a string", "metadata")
        if user:
            body["user"] = user  # its upstream form: server.upstream_user (router/upstreams/user_field.py)
        dropped.extend(f"metadata.{k}" for k in meta if k != "user_id")
    if data.get("output_config") is not None:
        _output_config(data["output_config"], body)
    if data.get("thinkgate") is not None:
        body["thinkgate"] = data["thinkgate"]
    if data.get("stream"):
        body["stream"] = True
    thinking, budget, omit = _thinking(data, max_tokens)
    display = data["thinking"].get("display") if thinking else None
    if display is not None and display not in _DISPLAYS:
        display = f"{display} (undocumented)"
    if display is not None:
        # how thinking is shown, not what is answered: "omitted" is honoured (reply), the
        # rest stream thinking as it comes; one not documented yet is accepted the same way
        if display not in ("summarized", "omitted"):
            dropped.append(f"thinking.display={display} (streamed as summarized)")
    if isinstance(data.get("output_config"), dict) and "effort" in data["output_config"]:
        dropped.append("output_config.effort")  # the route decides how much a prompt reasons
    return Translated(
        body=body, thinking=thinking, omit_thinking=omit, budget_tokens=budget, stop_sequences=list(stops or []),
        dropped=dropped,
    )
