"""Anthropic's context_management edits, applied to a Messages request's history before
it is translated (request.py): clear_tool_uses_* replaces old tool results with a
placeholder once the input is over its trigger, as Anthropic does server-side;
clear_thinking_* needs nothing here (earlier thinking never goes upstream)."""

from __future__ import annotations

import json
import math
from typing import Any

from router.api.anthropic.fields import bad as _bad

CLEARED = "[tool result cleared by context management]"


def edits_of(cm: Any) -> list[dict[str, Any]]:
    if not isinstance(cm, dict):
        raise _bad("context_management: Input should be an object", "context_management")
    edits = cm.get("edits", [])
    if not isinstance(edits, list):
        raise _bad("context_management.edits: Input should be a list", "context_management")
    for i, e in enumerate(edits):
        kind = e.get("type") if isinstance(e, dict) else None
        if not isinstance(kind, str) or not kind.startswith(("clear_thinking_", "clear_tool_uses_")):
            raise _bad(
                f"context_management.edits.{i}.type: Input should be a clear_thinking_* or clear_tool_uses_* edit",
                "context_management",
            )
    return edits


def _count(messages: list[Any]) -> int:
    """Input tokens as the rate limits estimate them (~4 characters a token)."""
    return math.ceil(len(json.dumps(messages, ensure_ascii=False)) / 4)


def _param(edit: dict[str, Any], name: str, kind: str, default: int) -> int:
    v = edit.get(name)
    if v is None:
        return default
    n = v.get("value") if isinstance(v, dict) and v.get("type") == kind else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise _bad(f"context_management: {name} should be {{type: '{kind}', value: N}}", "context_management")
    return n


def clear_tool_uses(messages: list[Any], edit: dict[str, Any]) -> tuple[list[Any], int]:
    """Anthropic's clear_tool_uses edit, on the history: once the input is over `trigger`
    tokens (default 100000), every tool result but the last `keep` tool uses (default 3)
    becomes a placeholder (and the call's input too with `clear_tool_inputs`), except
    tools in `exclude_tools`. The messages are copied, never changed in place; the
    number of results cleared is returned."""
    trigger = _param(edit, "trigger", "input_tokens", 100_000)
    keep = _param(edit, "keep", "tool_uses", 3)
    exclude = edit.get("exclude_tools") or []
    if not isinstance(exclude, list):
        raise _bad("context_management: exclude_tools should be a list of tool names", "context_management")
    if _count(messages) <= trigger:
        return messages, 0
    names: dict[str, str] = {}  # tool_use id -> tool name, in order
    for m in messages:
        for b in m.get("content") if isinstance(m, dict) and isinstance(m.get("content"), list) else ():
            if isinstance(b, dict) and b.get("type") == "tool_use" and isinstance(b.get("id"), str):
                names[b["id"]] = str(b.get("name"))
    ids = [i for i, n in names.items() if n not in exclude]
    clear = set(ids[: max(len(ids) - keep, 0)])
    if not clear:
        return messages, 0
    inputs = edit.get("clear_tool_inputs") is True
    out, n = [], 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            out.append(m)
            continue
        blocks = []
        for b in content:
            if isinstance(b, dict) and b.get("type") == "tool_result" and b.get("tool_use_id") in clear:
                b, n = {**b, "content": CLEARED}, n + 1
            elif inputs and isinstance(b, dict) and b.get("type") == "tool_use" and b.get("id") in clear:
                b = {**b, "input": {}}
            blocks.append(b)
        out.append({**m, "content": blocks})
    return out, n
