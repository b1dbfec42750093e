"""Anthropic `tools` and `tool_choice` -> OpenAI function tools and tool_choice.
A `defer_loading` tool is offered once a tool_reference in the history (the client's
tool search) names it, as Anthropic loads deferred tools; server tools are refused."""

from __future__ import annotations

from typing import Any

from router.api.anthropic.fields import bad

# tool keys with no upstream meaning (prompt caching, Anthropic's own tool-use options):
# accepted and recorded; a key not listed here or honoured is recorded too
_TOOL_HONOURED = {"name", "description", "input_schema", "type", "strict", "defer_loading"}


def tools_of(tools: Any, loaded: set[str] | None = None, dropped: list[str] | None = None) -> list[dict[str, Any]]:
    """Client tools as function tools. A `defer_loading` tool is held back unless its name
    is in `loaded` (named by a tool_reference in the history); `dropped` collects the
    tool keys accepted without upstream meaning."""
    if not isinstance(tools, list):
        raise bad("tools: Input should be a list", "tools")
    out = []
    for i, t in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(t, dict):
            raise bad(f"{where}: Input should be an object", where)
        if t.get("type") not in (None, "custom"):
            raise bad(
                f"{where}: server tool {t.get('type')!r} is not supported; define a client tool with input_schema",
                where,
            )
        name, schema = t.get("name"), t.get("input_schema")
        if not isinstance(name, str) or not name:
            raise bad(f"{where}.name: Field required", where)
        if not isinstance(schema, dict):
            raise bad(f"{where}.input_schema: Field required (a JSON schema object)", where)
        if dropped is not None:
            for k in t:
                if k not in _TOOL_HONOURED and f"tools.{k}" not in dropped:
                    dropped.append(f"tools.{k}")
        if t.get("defer_loading") is True and name not in (loaded or ()):
            if dropped is not None and "tools.defer_loading" not in dropped:
                dropped.append("tools.defer_loading")  # not offered until a tool search names it
            continue
        fn: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        if isinstance(t.get("strict"), bool):
            fn["strict"] = t["strict"]
        out.append({"type": "function", "function": fn})
    return out


def referenced_tools(messages: list[Any]) -> set[str]:
    """Tools named by tool_reference blocks inside tool results (Anthropic's tool search)."""
    names: set[str] = set()
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        for b in content if isinstance(content, list) else ():
            if isinstance(b, dict) and b.get("type") == "tool_result" and isinstance(b.get("content"), list):
                for r in b["content"]:
                    if isinstance(r, dict) and r.get("type") == "tool_reference" and isinstance(r.get("tool_name"), str):
                        names.add(r["tool_name"])
    return names


def tool_choice(tc: Any, body: dict[str, Any]) -> None:
    if not isinstance(tc, dict) or tc.get("type") not in ("auto", "any", "tool", "none"):
        raise bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'", "tool_choice")
    kind = tc["type"]
    if kind == "tool":
        if not isinstance(tc.get("name"), str) or not tc["name"]:
            raise bad("tool_choice.name: Field required", "tool_choice")
        body["tool_choice"] = {"type": "function", "function": {"name": tc["name"]}}
    else:
        body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if tc.get("disable_parallel_tool_use") is True and kind != "none":
        body["parallel_tool_calls"] = False
