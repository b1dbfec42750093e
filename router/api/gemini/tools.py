"""Gemini `tools` and `toolConfig` -> OpenAI function tools and tool_choice. Hosted
tools (googleSearch, codeExecution, ...) cannot run on a chat upstream: they are
dropped and named; a tool kind not known at all is refused."""

from __future__ import annotations

from typing import Any

from router.api.gemini.fields import bad
from router.api.gemini.fields import obj as _obj
from router.api.gemini.schema import to_json_schema

_HOSTED = {
    "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext", "retrieval", "fileSearch", "googleMaps",
    "computerUse", "enterpriseWebSearch", "mcpServers",
}  # fmt: skip


def tools_of(tools: Any, dropped: list[str]) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise bad("tools: must be a list", "tools")
    out = []
    for i, t in enumerate(tools):
        t = _obj(t, f"tools[{i}]")
        for k in t:
            if k in _HOSTED:
                dropped.append(f"tools[{i}].{k}")  # hosted tools the chat upstream cannot run
            elif k != "functionDeclarations":
                raise bad(f'Invalid JSON payload received. Unknown name "{k}" at \'tools[{i}]\'', "tools")
        decls = t.get("functionDeclarations") or []
        if not isinstance(decls, list):
            raise bad(f"tools[{i}].functionDeclarations: must be a list", "tools")
        for j, fd in enumerate(decls):
            where = f"tools[{i}].functionDeclarations[{j}]"
            fd = _obj(fd, where)
            name = fd.get("name")
            if not isinstance(name, str) or not name:
                raise bad(f"{where}.name: required", where)
            if fd.get("parametersJsonSchema") is not None:
                params = fd["parametersJsonSchema"]
                if not isinstance(params, dict):
                    raise bad(f"{where}.parametersJsonSchema: must be an object", where)
            elif fd.get("parameters") is not None:
                params = to_json_schema(fd["parameters"], f"{where}.parameters")
            else:
                params = {"type": "object", "properties": {}}
            fn: dict[str, Any] = {"name": name, "parameters": params}
            if isinstance(fd.get("description"), str):
                fn["description"] = fd["description"]
            if fd.get("behavior") is not None:
                dropped.append(f"{where}.behavior")
            out.append({"type": "function", "function": fn})
    return out


def tool_config(tc: Any, body: dict[str, Any], dropped: list[str]) -> None:
    tc = _obj(tc, "toolConfig")
    for k in tc:
        if k != "functionCallingConfig":
            dropped.append(f"toolConfig.{k}")
    fcc = tc.get("functionCallingConfig")
    if fcc is None:
        return
    fcc = _obj(fcc, "toolConfig.functionCallingConfig")
    mode = str(fcc.get("mode") or "AUTO").upper()
    allowed = fcc.get("allowedFunctionNames") or []
    if not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed):
        raise bad("toolConfig.functionCallingConfig.allowedFunctionNames: must be a list of names", "toolConfig")
    if mode in ("AUTO", "MODE_UNSPECIFIED", "VALIDATED"):
        body["tool_choice"] = "auto"
    elif mode == "NONE":
        body["tool_choice"] = "none"
    elif mode == "ANY":
        tools = body.get("tools") or []
        if allowed:
            unknown = set(allowed) - {t["function"]["name"] for t in tools}
            if unknown:
                raise bad(f"allowedFunctionNames: {sorted(unknown)} are not declared", "toolConfig")
            body["tools"] = [t for t in tools if t["function"]["name"] in allowed]
        if len(allowed) == 1:
            body["tool_choice"] = {"type": "function", "function": {"name": allowed[0]}}
        else:
            body["tool_choice"] = "required"
    else:
        raise bad(f"toolConfig.functionCallingConfig.mode: unknown mode {mode!r}", "toolConfig")
