"""A Gemini GenerateContentRequest -> the OpenAI chat body the pipeline takes.

What maps to what:
  systemInstruction (Content or string)  -> a leading system message
  contents[].role user / model           -> user / assistant messages ("function" counts as user)
  text parts                             -> text (parts with `thought: true` are the model's
                                            earlier thinking: not sent upstream again)
  inlineData image/* | text/*            -> image_url (a data: URL) | text
  fileData with an http(s) image URI     -> image_url
  model functionCall parts               -> assistant tool_calls (`id` kept, or made from
                                            the part's place so a later turn maps back)
  functionResponse parts                 -> role "tool" messages, matched to their call by
                                            id, else by name in order
  tools[].functionDeclarations           -> function tools (parameters converted by
                                            schema.py; parametersJsonSchema as is)
  toolConfig.functionCallingConfig       -> tool_choice (AUTO auto, ANY required or the one
                                            allowed function, NONE none)
  generationConfig                       -> temperature, top_p, top_k, n, max_tokens, stop,
                                            presence/frequency_penalty, seed, response_format
  thinkingConfig.thinkingLevel           -> reasoning_effort; thinkingBudget N -> the DEER
                                            budget, 0 -> effort "minimal"
Accepted and dropped (named in the decision record): safetySettings, labels, hosted tools
(googleSearch, codeExecution, urlContext, ...), retrievalConfig, logprobs requests, media
resolution, thought signatures. Refused, because dropping them would change the answer:
cachedContent, non-text output modalities, inline data the upstream cannot read.

Google's REST API takes both camelCase and snake_case field names; so does this.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

from router.api.gemini.schema import to_json_schema
from router.errors import InvalidRequest

_TOP = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model", "thinkgate"}
_TOP_DROPPED = {"safetySettings", "labels", "serviceTier", "store"}
_TOP_REFUSED = {"cachedContent": "cached contents are not available through this gateway; send the contents"}
_GEN = {
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "responseMimeType",
    "responseSchema", "responseJsonSchema", "presencePenalty", "frequencyPenalty", "seed", "thinkingConfig",
    "responseModalities",
}  # fmt: skip
# answer-neutral: how logprobs are reported, image tokenization, civic answers, audio voice
# (only used with audio output, which is refused), Gemini's own model routing
_GEN_DROPPED = {
    "responseLogprobs", "logprobs", "mediaResolution", "enableEnhancedCivicAnswers", "speechConfig", "routingConfig",
    "modelSelectionConfig", "audioTimestamp", "enableAffectiveDialog",
}  # fmt: skip
_HOSTED = {
    "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext", "retrieval", "fileSearch", "googleMaps",
    "computerUse", "enterpriseWebSearch", "mcpServers",
}  # fmt: skip
_EFFORTS = {"minimal", "low", "medium", "high"}
_MAX_STOP = 4  # what OpenAI-compatible upstreams accept


@dataclass
class Translated:
    body: dict[str, Any]  # an OpenAI chat body (plus `thinkgate` controls when given)
    include_thoughts: bool = False
    budget_tokens: int | None = None
    dropped: list[str] = field(default_factory=list)


def bad(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_argument")


def camel(d: dict[str, Any]) -> dict[str, Any]:
    """snake_case keys -> camelCase (Google's JSON mapping accepts both)."""
    out = {}
    for k, v in d.items():
        head, *rest = str(k).split("_")
        out[head + "".join(w[:1].upper() + w[1:] for w in rest) if rest else k] = v
    return out


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise bad(f"{where}: must be an object", where)
    return camel(v)


def _number(d: dict[str, Any], name: str, lo: float, hi: float | None, where: str) -> float | None:
    v = d.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise bad(f"{where}.{name}: must be a number", f"{where}.{name}")
    if v < lo or (hi is not None and v > hi):
        rng = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        raise bad(f"{where}.{name}: must be {rng}, got {v}", f"{where}.{name}")
    return v


def _int(d: dict[str, Any], name: str, lo: int, where: str) -> int | None:
    v = d.get(name)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(f"{where}.{name}: must be an integer", f"{where}.{name}")
    if v < lo:
        raise bad(f"{where}.{name}: must be at least {lo}, got {v}", f"{where}.{name}")
    return v


# -- contents ---------------------------------------------------------------------


def _inline(part: dict[str, Any], where: str) -> dict[str, Any]:
    blob = _obj(part, where)
    mime, data = blob.get("mimeType"), blob.get("data")
    if not isinstance(mime, str) or not isinstance(data, str) or not data:
        raise bad(f"{where}: inlineData needs 'mimeType' and base64 'data'", where)
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if mime.startswith("text/") or mime in ("application/json", "application/xml"):
        try:
            return {"type": "text", "text": base64.b64decode(data, validate=True).decode("utf-8")}
        except (binascii.Error, UnicodeDecodeError):
            raise bad(f"{where}.data: not base64 of UTF-8 text", where) from None
    raise bad(f"{where}.mimeType: {mime!r} is not supported here (images and text only)", where)


def _file(part: dict[str, Any], where: str) -> dict[str, Any]:
    f = _obj(part, where)
    uri, mime = f.get("fileUri"), f.get("mimeType") or ""
    if isinstance(uri, str) and uri.startswith(("http://", "https://")) and str(mime).startswith("image/"):
        return {"type": "image_url", "image_url": {"url": uri}}
    raise bad(f"{where}: fileData is supported for http(s) image URLs only (uploaded files are Google's)", where)


def _response_text(fr: dict[str, Any], where: str) -> str:
    resp = fr.get("response", {})
    if isinstance(resp, str):
        text = resp
    elif isinstance(resp, dict):
        text = json.dumps(resp, ensure_ascii=False)
    else:
        raise bad(f"{where}.response: must be an object", where)
    extra = fr.get("parts")
    if extra:
        if not isinstance(extra, list):
            raise bad(f"{where}.parts: must be a list", where)
        for i, p in enumerate(extra):
            p = _obj(p, f"{where}.parts.{i}")
            if not isinstance(p.get("text"), str):
                # OpenAI's tool messages carry text only
                raise bad(f"{where}.parts.{i}: only text parts are supported in a functionResponse", where)
            text += "\n" + p["text"]
    return text


class _Calls:
    """The function calls of the latest model turn still waiting for a response:
    Gemini ids are optional, OpenAI's tool_call_id is not."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str]] = []  # (id, name)

    def take(self, fr: dict[str, Any], where: str) -> str:
        fid, name = fr.get("id"), fr.get("name")
        for i, (cid, cname) in enumerate(self.pending):
            if fid and cid == fid:
                return self.pending.pop(i)[0]
        for i, (cid, cname) in enumerate(self.pending):
            if cname == name:
                return self.pending.pop(i)[0]
        raise bad(f"{where}: functionResponse {name!r} answers no functionCall of the model turn before it", where)


def _content(c: Any, i: int, calls: _Calls) -> list[dict[str, Any]]:
    where = f"contents[{i}]"
    c = _obj(c, where)
    role = c.get("role") or "user"
    if role not in ("user", "model", "function"):
        raise bad(f"{where}.role: must be 'user' or 'model', got {role!r}", where)
    parts = c.get("parts")
    if not isinstance(parts, list) or not parts:
        raise bad(f"{where}.parts: must be a non-empty list", where)
    content: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    tool_msgs: list[dict[str, Any]] = []
    model = role == "model"
    for j, p in enumerate(parts):
        pw = f"{where}.parts[{j}]"
        p = _obj(p, pw)
        if "text" in p:
            if not isinstance(p["text"], str):
                raise bad(f"{pw}.text: must be a string", pw)
            if p.get("thought") is True:
                continue  # earlier turns' thinking is not sent upstream again
            content.append({"type": "text", "text": p["text"]})
        elif "functionCall" in p and model:
            fc = _obj(p["functionCall"], f"{pw}.functionCall")
            name, args = fc.get("name"), fc.get("args", {})
            if not isinstance(name, str) or not name:
                raise bad(f"{pw}.functionCall.name: required", pw)
            if not isinstance(args, dict):
                raise bad(f"{pw}.functionCall.args: must be an object", pw)
            cid = fc.get("id") if isinstance(fc.get("id"), str) and fc.get("id") else f"call_{i}_{j}"
            tool_calls.append({"id": cid, "type": "function",
                               "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}})  # fmt: skip
        elif "functionResponse" in p and not model:
            fr = _obj(p["functionResponse"], f"{pw}.functionResponse")
            cid = calls.take(fr, pw)
            tool_msgs.append({"role": "tool", "tool_call_id": cid, "content": _response_text(fr, pw)})
        elif "inlineData" in p and not model:
            content.append(_inline(p["inlineData"], f"{pw}.inlineData"))
        elif "fileData" in p and not model:
            content.append(_file(p["fileData"], f"{pw}.fileData"))
        elif set(p) <= {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}:
            continue  # a bare thought signature: bookkeeping of Google's models
        else:
            kinds = ", ".join(sorted(set(p) - {"thought", "thoughtSignature"})) or "empty"
            raise bad(f"{pw}: part ({kinds}) is not supported in a {role} turn", pw)
    if model:
        calls.pending = [(tc["id"], tc["function"]["name"]) for tc in tool_calls]
        if not content and not tool_calls:
            return []  # a turn of thoughts only
        text = "".join(x["text"] for x in content if x["type"] == "text")
        # "" beside tool_calls, not null: llama.cpp's server takes a string only
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            msg["tool_calls"] = tool_calls
        return [msg]
    out: list[dict[str, Any]] = list(tool_msgs)  # tool results right after their call, as OpenAI wants
    if content:
        only_text = len(content) == 1 and content[0]["type"] == "text"
        out.append({"role": "user", "content": content[0]["text"] if only_text else content})
    return out


def system_text(si: Any) -> str:
    if isinstance(si, str):
        return si
    si = _obj(si, "systemInstruction")
    parts = si.get("parts")
    if not isinstance(parts, list):
        raise bad("systemInstruction.parts: must be a list", "systemInstruction")
    texts = []
    for i, p in enumerate(parts):
        p = _obj(p, f"systemInstruction.parts[{i}]")
        if not isinstance(p.get("text"), str):
            raise bad(f"systemInstruction.parts[{i}]: only text parts are supported", "systemInstruction")
        texts.append(p["text"])
    return "\n".join(texts)


def messages_of(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAI messages of a (camelCased) request body; also for countTokens."""
    contents = d.get("contents")
    if not isinstance(contents, list) or not contents:
        raise bad("contents: must be a non-empty list", "contents")
    out: list[dict[str, Any]] = []
    if d.get("systemInstruction") is not None:
        system = system_text(d["systemInstruction"])
        if system:
            out.append({"role": "system", "content": system})
    calls = _Calls()
    for i, c in enumerate(contents):
        out.extend(_content(c, i, calls))
    if not any(m["role"] != "system" for m in out):
        raise bad("contents: no turn has content the model can read", "contents")
    return out


# -- tools ------------------------------------------------------------------------


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


def _tool_config(tc: Any, body: dict[str, Any], dropped: list[str]) -> None:
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


# -- generationConfig ---------------------------------------------------------------


def _response_format(g: dict[str, Any], body: dict[str, Any]) -> None:
    mime = g.get("responseMimeType")
    schema = g.get("responseJsonSchema")
    if schema is None and g.get("responseSchema") is not None:
        schema = to_json_schema(g["responseSchema"], "generationConfig.responseSchema")
    if mime in (None, "", "text/plain"):
        if schema is not None and mime is not None:
            raise bad("generationConfig.responseSchema: needs responseMimeType 'application/json'", "generationConfig")
        return
    if mime != "application/json":
        raise bad(f"generationConfig.responseMimeType: {mime!r} is not supported (text/plain, application/json)",
                  "generationConfig")  # fmt: skip
    if schema is None:
        body["response_format"] = {"type": "json_object"}
    else:
        if not isinstance(schema, dict):
            raise bad("generationConfig.responseJsonSchema: must be an object", "generationConfig")
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def _thinking(g: dict[str, Any], body: dict[str, Any], t: Translated) -> None:
    tc = g.get("thinkingConfig")
    if tc is None:
        return
    tc = _obj(tc, "generationConfig.thinkingConfig")
    where = "generationConfig.thinkingConfig"
    for k in tc:
        if k not in ("includeThoughts", "thinkingBudget", "thinkingLevel"):
            raise bad(f'Invalid JSON payload received. Unknown name "{k}" at \'{where}\'', where)
    inc = tc.get("includeThoughts")
    if inc is not None and not isinstance(inc, bool):
        raise bad(f"{where}.includeThoughts: must be a boolean", where)
    t.include_thoughts = bool(inc)
    level = tc.get("thinkingLevel")
    if level is not None:
        lv = str(level).lower()
        if lv == "thinking_level_unspecified":
            lv = ""
        elif lv not in _EFFORTS:
            raise bad(f"{where}.thinkingLevel: must be one of MINIMAL, LOW, MEDIUM, HIGH", where)
        if lv:
            body["reasoning_effort"] = lv
    budget = tc.get("thinkingBudget")
    if budget is not None:
        if isinstance(budget, float) and budget.is_integer():
            budget = int(budget)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < -1:
            raise bad(f"{where}.thinkingBudget: must be -1 (dynamic), 0 (off) or a positive integer", where)
        if budget == 0:
            body.setdefault("reasoning_effort", "minimal")  # the least this gateway's routes think
        elif budget > 0:
            t.budget_tokens = budget


def _generation(g: Any, body: dict[str, Any], t: Translated) -> None:
    where = "generationConfig"
    g = _obj(g, where)
    for k in g:
        if k in _GEN_DROPPED:
            t.dropped.append(f"{where}.{k}")
        elif k not in _GEN:
            raise bad(f'Invalid JSON payload received. Unknown name "{k}" at \'{where}\'', f"{where}.{k}")
    for name, key, lo, hi in (
        ("temperature", "temperature", 0.0, 2.0),
        ("topP", "top_p", 0.0, 1.0),
        ("presencePenalty", "presence_penalty", -2.0, 2.0),
        ("frequencyPenalty", "frequency_penalty", -2.0, 2.0),
    ):
        v = _number(g, name, lo, hi, where)
        if v is not None:
            body[key] = v
    for name, key, lo in (("topK", "top_k", 1), ("maxOutputTokens", "max_tokens", 1), ("candidateCount", "n", 1)):
        v = _int(g, name, lo, where)
        if v is not None:
            body[key] = v
    seed = _int(g, "seed", -(2**63), where)
    if seed is not None:
        body["seed"] = seed
    stops = g.get("stopSequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise bad(f"{where}.stopSequences: must be a list of non-empty strings", where)
        if len(stops) > _MAX_STOP:
            raise bad(f"{where}.stopSequences: at most {_MAX_STOP} are supported", where)
        if stops:
            body["stop"] = list(stops)
    mods = g.get("responseModalities")
    if mods is not None and (
        not isinstance(mods, list) or any(str(m).upper() not in ("TEXT", "MODALITY_UNSPECIFIED") for m in mods)
    ):
        raise bad(f"{where}.responseModalities: only TEXT output is supported", where)
    _response_format(g, body)
    _thinking(g, body, t)


def translate(data: Any, model: str) -> Translated:
    """`model` is the name in the URL (`models/{model}:generateContent`)."""
    if not isinstance(data, dict):
        raise bad("the request body must be a JSON object")
    d = camel(data)
    t = Translated(body={})
    for k in d:
        if k in _TOP_REFUSED and d[k] not in (None, ""):
            raise bad(f"{k}: {_TOP_REFUSED[k]}", k)
        if k in _TOP_DROPPED:
            t.dropped.append(k)
        elif k not in _TOP and k not in _TOP_REFUSED:
            raise bad(f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.', k)
    body = t.body
    body["model"] = model
    body["messages"] = messages_of(d)
    if d.get("tools") is not None:
        tools = tools_of(d["tools"], t.dropped)
        if tools:
            body["tools"] = tools
    if d.get("toolConfig") is not None:
        _tool_config(d["toolConfig"], body, t.dropped)
        if "tools" not in body:
            body.pop("tool_choice", None)  # OpenAI refuses tool_choice without tools
    if d.get("generationConfig") is not None:
        _generation(d["generationConfig"], body, t)
    if d.get("thinkgate") is not None:
        body["thinkgate"] = d["thinkgate"]
    return t
