"""Cache keys: what makes two requests "the same".

Pure functions over a `ChatRequest`; no I/O. The exact key hashes everything
that can change the answer; the semantic *scope* hashes the same things minus
the last user turn, so a semantic lookup only ever compares prompts that share
tenant, alias, parameters and the whole earlier conversation ("and in
Python?" in two different conversations lands in two different scopes).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from router.types import ChatRequest

# Body fields that never change the generated answer. Everything else a client
# sends (temperature, tools, response_format, seed, provider-specific knobs...)
# is part of the key: an unknown field costs a hit, never a wrong answer.
IGNORED_FIELDS = frozenset(
    {"messages", "prompt", "model", "stream", "stream_options", "user", "metadata", "store", "service_tier"}
)

# Message fields that are part of a turn's identity. A history turn's thinking is not:
# upstreams never see it (router/upstreams/hygiene.py), and SDKs differ in whether they
# send it back, so with it in the key the same conversation would miss.
_MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "function_call")


@dataclass(frozen=True)
class RequestKeys:
    exact: str  # hex digest of the whole request
    scope: str  # hex digest of the request minus its last user turn
    tenant: str
    alias: str

    @property
    def entry(self) -> str:
        """The storage key: tenant and alias stay readable (hex) so an admin
        can invalidate by either with a key pattern."""
        return f"{self.tenant.encode().hex()}:{self.alias.encode().hex()}:{self.exact}"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _content(content: Any) -> Any:
    # [{"type": "text", "text": "hi"}] and "hi" are the same prompt
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return content


def canonical_message(message: dict[str, Any]) -> dict[str, Any]:
    out = {k: message[k] for k in _MESSAGE_FIELDS if message.get(k) is not None}
    if "content" in out:
        out["content"] = _content(out["content"])
    return out


def output_params(req: ChatRequest) -> dict[str, Any]:
    """Everything besides the messages that shapes the answer."""
    params = {k: v for k, v in req.body.items() if k not in IGNORED_FIELDS}
    c = req.controls
    # controls that change which model answers, or how long it thinks
    if c.force_route is not None:
        params["~force_route"] = c.force_route
    if not c.deer.enabled or c.deer.threshold is not None:
        params["~deer"] = [c.deer.enabled, c.deer.threshold]
    if c.deer.budget_tokens is not None:
        params["~thinking_budget"] = c.deer.budget_tokens
    if c.selfref_threshold is not None:
        params["~selfref"] = c.selfref_threshold
    if c.cache.scope is not None:  # an agent session's turns answer only that session
        params["~session"] = c.cache.scope
    return params


def _last_user(messages: list[dict[str, Any]]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return -1


def beyond_text(message: dict[str, Any]) -> dict[str, Any]:
    """What of a turn its embedding does not see: every field but the text (`name`,
    tool calls...) and every non-text content part (images by URL or base64, audio,
    files), in order. The semantic scope must include it, or two users asking the
    same words about different images would share one answer."""
    out = {k: v for k, v in message.items() if k != "content"}
    content = message.get("content")
    if isinstance(content, list):
        parts = [p for p in content if not (isinstance(p, dict) and p.get("type") == "text")]
        if parts:
            out["content"] = parts
    elif content is not None and not isinstance(content, str):
        out["content"] = content
    return out


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBERS_CHARS = 16_000  # the numbers of a longer turn are read from its start (bounded cost)


def numbers_of(message: dict[str, Any]) -> list[str]:
    """The numbers a turn states, in order. In the semantic scope: a sentence embedding
    barely moves when one number of a word problem changes (bench/semantic_cache.py,
    near-miss/number), but the answer does, so only prompts stating the same numbers
    may share one."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return _NUMBER.findall(content[:_NUMBERS_CHARS]) if isinstance(content, str) else []


def request_keys(req: ChatRequest) -> RequestKeys:
    messages = [canonical_message(m) for m in req.messages]
    head = _dumps([req.caller.tenant, req.alias, req.endpoint, output_params(req), req.rule])
    last = _last_user(messages)
    context = messages[:last] + messages[last + 1 :] if last >= 0 else messages
    if last >= 0:
        context = [*context, {"~last_user": beyond_text(messages[last]), "~numbers": numbers_of(messages[last])}]
    scope = hashlib.blake2b(b"scope\0" + head + b"\0" + _dumps(context), digest_size=16).hexdigest()
    exact = hashlib.blake2b(b"exact\0" + head + b"\0" + _dumps(messages), digest_size=20).hexdigest()
    return RequestKeys(exact=exact, scope=scope, tenant=req.caller.tenant, alias=req.alias)


def is_deterministic(req: ChatRequest) -> bool:
    """Greedy decoding: an explicit temperature of 0 (OpenAI's default is 1)."""
    t = req.body.get("temperature")
    return isinstance(t, (int, float)) and not isinstance(t, bool) and t == 0


def opted_in(req: ChatRequest) -> bool:
    # CacheControl.opt_in (x-thinkgate-cache-control: opt-in, or extra_body
    # thinkgate cache_control "opt-in"): cache even a sampled answer.
    return bool(getattr(req.controls.cache, "opt_in", False))
