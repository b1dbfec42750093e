"""The Responses request's tools, tool_choice and text.format -> their chat
equivalents (function tools flat -> nested under `function`, json_schema formats
-> `response_format`).

A chat upstream knows only function tools, so:
- `namespace` tools (Codex groups its sub-agent tools so) are flattened: each
  function inside becomes a chat tool under its own name, and `namespaces` maps
  that name back, so a call the model makes goes out as the namespace's call;
- hosted tools, which OpenAI runs itself (web_search, file_search,
  code_interpreter, ...), are dropped and named in the decision record, or
  refused when the operator configured `refuse` for the model alias: the model
  then answers without them, as a model without those tools would;
- every other type (custom, local_shell, computer, ...) is a tool the client
  runs and expects calls to; dropping it would change what the agent can do, so
  it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.api.responses_fields import bad, check_type, str_field

# tools OpenAI executes on its side; a chat upstream has no way to run them
HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "web_search_preview_2025_03_11", "web_search_2025_08_26",
    "file_search", "code_interpreter", "image_generation", "mcp", "tool_search",
})  # fmt: skip


@dataclass
class ChatTools:
    tools: list[dict[str, Any]] = field(default_factory=list)  # chat function tools
    namespaces: dict[str, str] = field(default_factory=dict)  # function name -> its namespace
    dropped: list[str] = field(default_factory=list)  # "tools[3]:web_search", for the record


def _function(t: dict[str, Any], where: str) -> dict[str, Any]:
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
            raise bad(f"'{where}.parameters' must be an object (a JSON schema)", f"{where}.parameters", "invalid_type")
        fn["parameters"] = params
    strict = t.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise bad(f"'{where}.strict' must be a boolean", f"{where}.strict", "invalid_type")
        fn["strict"] = strict
    return {"type": "function", "function": fn}


def chat_tools(tools: list[Any], hosted: str = "drop") -> ChatTools:
    """`hosted`: drop | refuse, what to do with a hosted tool."""
    out = ChatTools()
    names: set[str] = set()

    def add(t: dict[str, Any], where: str, namespace: str | None) -> None:
        chat = _function(t, where)
        name = chat["function"]["name"]
        if name in names:
            # flattened namespaces share one name space: a call could not be mapped back
            raise bad(f"'{where}.name' {name!r} is used by another tool", f"{where}.name")
        names.add(name)
        if namespace is not None:
            out.namespaces[name] = namespace
        out.tools.append(chat)

    for i, t in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(t, dict):
            raise bad(f"'{where}' must be an object", where, "invalid_type")
        kind = t.get("type")
        if kind == "function":
            add(t, where, None)
        elif kind == "namespace":
            ns = str_field(t, "name", where)
            inner = t.get("tools")
            if not isinstance(inner, list):
                raise bad(f"'{where}.tools' must be an array of function tools", f"{where}.tools", "invalid_type")
            for j, f in enumerate(inner):
                at = f"{where}.tools[{j}]"
                if not isinstance(f, dict) or f.get("type", "function") != "function":
                    raise bad(f"'{at}.type' must be function inside a namespace", f"{at}.type", "unsupported_value")
                add(f, at, ns)
        elif isinstance(kind, str) and kind in HOSTED_TOOLS:
            if hosted == "refuse":
                raise bad(
                    f"'{where}.type' {kind!r} is a hosted tool this gateway cannot run for this model",
                    f"{where}.type",
                    "unsupported_value",
                )
            out.dropped.append(f"{where}:{kind}")
        else:
            raise bad(
                f"'{where}.type' {kind!r} is not supported: only function, namespace and hosted tools are",
                f"{where}.type",
                "unsupported_value",
            )
    return out


_TOOL_CHOICES = {"auto", "none", "required"}


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
