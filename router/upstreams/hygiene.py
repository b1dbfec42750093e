"""What goes to an upstream is what its API defines, and what comes back is one shape.

Outbound: chat messages keep only the fields the OpenAI chat API defines for their
role. SDKs send thinkgate's own reply back as history, so an assistant turn carries
`reasoning_content` (or vLLM's `reasoning`), and litellm as a client adds
`provider_specific_fields`; strict providers (DeepSeek, Groq, Mistral) answer the
whole conversation with a 400 for either. Reasoning fields survive only for a model
configured with `accepts_reasoning_history: true`.

Inbound: upstreams name the thinking `reasoning_content` (DeepSeek, vLLM < 0.16,
llama.cpp) or `reasoning` (vLLM >= 0.16, OpenRouter); the pipeline, the cache and
every front end see `reasoning_content` only. Which name the client gets is the
API layer's choice (router.api.reasoning_field).

Both directions copy only what they change: a clean body costs a scan, no copy.
"""

from __future__ import annotations

from typing import Any

REASONING_FIELDS = ("reasoning_content", "reasoning")

# The OpenAI chat API's message fields per role (legacy `function` included).
MESSAGE_FIELDS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}


# A tool call's fields: SDK helpers add their own (the openai SDK's stream helper keeps
# `index` and `function.parsed_arguments` on the final message it hands back).
TOOL_CALL_FIELDS = frozenset({"id", "type", "function", "custom"})
FUNCTION_FIELDS = frozenset({"name", "arguments"})


_WITH_REASONING = {role: fields | set(REASONING_FIELDS) for role, fields in MESSAGE_FIELDS.items()}


def _call_is_clean(tc: Any) -> bool:
    if not isinstance(tc, dict) or not TOOL_CALL_FIELDS.issuperset(tc):
        return False
    fn = tc.get("function")
    return not isinstance(fn, dict) or FUNCTION_FIELDS.issuperset(fn)


def _clean_tool_call(tc: Any) -> Any:
    if not isinstance(tc, dict) or _call_is_clean(tc):
        return tc
    out = {k: v for k, v in tc.items() if k in TOOL_CALL_FIELDS}
    fn = tc.get("function")
    if isinstance(fn, dict):
        out["function"] = {k: v for k, v in fn.items() if k in FUNCTION_FIELDS}
    return out


def clean_message(message: dict[str, Any], keep_reasoning: bool = False) -> dict[str, Any]:
    """The message with only its role's defined fields (plus reasoning when kept)."""
    role = message.get("role")
    allowed = (_WITH_REASONING if keep_reasoning else MESSAGE_FIELDS).get(role) if isinstance(role, str) else None
    if allowed is None:  # an unknown role is the protocol layer's error, not ours to hide
        return message
    calls = message.get("tool_calls")
    calls_clean = not isinstance(calls, list) or all(_call_is_clean(tc) for tc in calls)
    if calls_clean and allowed.issuperset(message):  # the common case: a scan in C, no copy
        return message
    out = {k: v for k, v in message.items() if k in allowed}
    if not calls_clean and "tool_calls" in out:
        out["tool_calls"] = [_clean_tool_call(tc) for tc in calls]  # type: ignore[union-attr]
    return out


def clean_messages(messages: list[dict[str, Any]], keep_reasoning: bool = False) -> list[dict[str, Any]]:
    out = None
    for i, m in enumerate(messages):
        c = clean_message(m, keep_reasoning) if isinstance(m, dict) else m
        if c is not m:
            if out is None:
                out = list(messages[:i])
            out.append(c)
        elif out is not None:
            out.append(m)
    return messages if out is None else out


def clean_body(body: dict[str, Any], keep_reasoning: bool = False) -> dict[str, Any]:
    """A chat body whose messages an OpenAI-strict upstream accepts."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    cleaned = clean_messages(messages, keep_reasoning)
    return body if cleaned is messages else {**body, "messages": cleaned}


# -- inbound -----------------------------------------------------------------------


def _to_reasoning_content(d: dict[str, Any]) -> None:
    if "reasoning" in d:
        value = d.pop("reasoning")
        if value is not None and not d.get("reasoning_content"):
            d["reasoning_content"] = value


def normalize_reply(body: dict[str, Any]) -> dict[str, Any]:
    """In place: `message.reasoning` -> `message.reasoning_content`."""
    for c in body.get("choices") or ():
        msg = c.get("message") if isinstance(c, dict) else None
        if isinstance(msg, dict):
            _to_reasoning_content(msg)
    return body


def normalize_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """In place: `delta.reasoning` -> `delta.reasoning_content`."""
    for c in chunk.get("choices") or ():
        delta = c.get("delta") if isinstance(c, dict) else None
        if isinstance(delta, dict):
            _to_reasoning_content(delta)
    return chunk
