"""Responses `input` items -> chat messages (router/api/responses/input.py's parse).

A string is one user message; a list holds message, function_call,
function_call_output and reasoning items. Each comes back twice: as the
Responses item the store keeps (with an id: the client's own when it sent one)
and as the chat message an upstream is sent. A function call after an assistant
turn joins it; `reasoning` items are kept in the item list but never sent
upstream, since no chat API takes an earlier turn's thinking as input."""

from __future__ import annotations

import uuid
from typing import Any

from router.api.responses.fields import bad, str_field

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _content_parts(content: Any, where: str, role: str) -> tuple[list[dict[str, Any]], Any]:
    """Responses content -> (normalised Responses parts, chat content)."""
    if isinstance(content, str):
        if role == "assistant":
            return [{"type": "output_text", "text": content, "annotations": []}], content
        return [{"type": "input_text", "text": content}], content
    if not isinstance(content, list):
        raise bad(
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
            raise bad(f"'{at}' must be an object with a 'type'", at, "invalid_type")
        kind = p["type"]
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            text = str_field(p, "text", at)
            assert text is not None
            parts.append(text_part(text))
            chat.append({"type": "text", "text": text})
        elif kind == "refusal":
            text = str_field(p, "refusal", at)
            assert text is not None
            parts.append({"type": "refusal", "refusal": text} if role == "assistant" else text_part(text))
            chat.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = p.get("image_url")
            if not isinstance(url, str) or not url:
                raise bad(
                    f"'{at}.image_url' must be a URL or data URL (file_id images are not supported)", f"{at}.image_url"
                )
            image: dict[str, Any] = {"url": url}
            detail = p.get("detail")
            if detail is not None:
                if detail not in ("auto", "low", "high", "original"):
                    raise bad(f"'{at}.detail' must be auto, low or high", f"{at}.detail")
                if detail != "original":
                    image["detail"] = detail
            parts.append({"type": "input_image", "image_url": url, "detail": detail or "auto"})
            chat.append({"type": "image_url", "image_url": image})
        else:
            raise bad(
                f"'{at}.type' {kind!r} is not supported (use input_text, output_text or input_image)",
                at,
                "unsupported_value",
            )
    if role == "assistant" or all(c["type"] == "text" for c in chat):
        # text-only content as one string: the form every chat upstream accepts
        if any(c["type"] != "text" for c in chat):
            raise bad(f"'{where}.content': assistant messages take text only", f"{where}.content")
        return parts, "".join(c["text"] for c in chat)
    return parts, chat


def _output_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, p in enumerate(value):
            if not isinstance(p, dict) or p.get("type") not in ("input_text", "output_text", "text"):
                raise bad(f"'{where}[{j}]' must be an input_text part", f"{where}[{j}]", "unsupported_value")
            texts.append(str_field(p, "text", f"{where}[{j}]"))
        return "".join(t for t in texts if t)
    raise bad(f"'{where}' must be a string or an array of input_text parts", where, "invalid_type")


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
            raise bad(f"'{where}' must be an object", where, "invalid_type")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str) or role not in _ROLES:
                raise bad(f"'{where}.role' must be one of user, assistant, system, developer", f"{where}.role")
            if "content" not in item:
                raise bad(f"'{where}.content' is required", f"{where}.content", "missing_field")
            parts, content = _content_parts(item["content"], where, role)
            status = (
                item.get("status") if item.get("status") in ("in_progress", "completed", "incomplete") else "completed"
            )
            out_items.append(
                {"id": _id(item, "msg"), "type": "message", "role": role, "status": status, "content": parts}
            )
            messages.append({"role": _ROLES[role], "content": content})
        elif kind == "function_call":
            call_id, name = str_field(item, "call_id", where), str_field(item, "name", where)
            arguments = str_field(item, "arguments", where)
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
            call_id = str_field(item, "call_id", where)
            if "output" not in item:
                raise bad(f"'{where}.output' is required", f"{where}.output", "missing_field")
            output = _output_text(item["output"], f"{where}.output")
            out_items.append({"id": _id(item, "fco"), "type": "function_call_output", "call_id": call_id,
                              "output": item["output"], "status": "completed"})  # fmt: skip
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            # an earlier turn's thinking: kept in the item list, never sent upstream as text
            out_items.append(_reasoning_item(item, where))
        elif kind == "item_reference":
            raise bad(
                f"'{where}': item_reference is not supported; send the item itself or use previous_response_id",
                where,
                "unsupported_value",
            )
        else:
            raise bad(
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
            raise bad(f"'{where}.{key}' must be an array of {kind} parts", f"{where}.{key}", "invalid_type")
        out[key] = [{"type": kind, "text": x["text"]} for x in parts]
    if isinstance(item.get("encrypted_content"), str):
        out["encrypted_content"] = item["encrypted_content"]
    return out


def _call_item(item: dict[str, Any], call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": _id(item, "fc"), "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}  # fmt: skip
