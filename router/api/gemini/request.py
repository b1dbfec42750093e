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
This module checks the top-level fields and generationConfig and assembles the result;
contents.py (contents, systemInstruction) and tools.py (tools, toolConfig) translate
the rest, with fields.py's shared checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.api.gemini.contents import messages_of
from router.api.gemini.fields import bad, camel
from router.api.gemini.fields import integer as _int
from router.api.gemini.fields import number as _number
from router.api.gemini.fields import obj as _obj
from router.api.gemini.schema import to_json_schema
from router.api.gemini.tools import tool_config, tools_of

__all__ = ["Translated", "bad", "camel", "messages_of", "tools_of", "translate"]

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
_EFFORTS = {"minimal", "low", "medium", "high"}
_MAX_STOP = 4  # what OpenAI-compatible upstreams accept


@dataclass
class Translated:
    body: dict[str, Any]  # an OpenAI chat body (plus `thinkgate` controls when given)
    include_thoughts: bool = False
    budget_tokens: int | None = None
    dropped: list[str] = field(default_factory=list)


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
        tool_config(d["toolConfig"], body, t.dropped)
        if "tools" not in body:
            body.pop("tool_choice", None)  # OpenAI refuses tool_choice without tools
    if d.get("generationConfig") is not None:
        _generation(d["generationConfig"], body, t)
    if d.get("thinkgate") is not None:
        body["thinkgate"] = d["thinkgate"]
    return t
