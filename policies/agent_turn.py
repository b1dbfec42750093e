"""Agent loops, pure: what kind of turn a request is, which loop it belongs to,
what the router should read of it, and how a loop's route moves.

Every turn of a coding agent's tool loop is a request that resends the whole
session. Read from the request alone (OpenAI chat messages, which every front
end translates to), a turn is one of:

  chat     no tools offered and no tool call anywhere in the history
  task     the last turn is the user's (a new task, or a follow-up in a session)
           and the session uses tools: it opens a loop
  relay    the last turn is a tool result and more tool calls are possible
           (tools offered, `tool_choice` not "none"): the model relays the
           result to its next step
  summary  the last turn is a tool result and no further call is possible (no
           tools offered, or `tool_choice: "none"`): the model must answer in text

Trailing assistant turns (a prefill) and user turns whose text is only what the
client injects (`<system-reminder>` blocks, which Claude Code appends next to
tool results) do not count as the last turn: they neither open a task nor end
a relay.

A loop is one task of one session: the session's id (what the client sends, or
the fingerprint of its system prompt and opening message, policies.conversation)
plus the task's text. Its state is the route and model of the turn that opened
it; `remembered` lets it move up (fast -> reasoning, after a Self-Ref
escalation), never down.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from router.types import Route

TurnType = Literal["chat", "task", "relay", "summary"]
TURN_TYPES: tuple[TurnType, ...] = ("chat", "task", "relay", "summary")
AGENT_TURNS: tuple[TurnType, ...] = ("task", "relay", "summary")

_RESULT_ROLES = ("tool", "function")
_REMINDER_OPEN, _REMINDER_CLOSE = "<system-reminder>", "</system-reminder>"

# What the router reads of an agent turn. The encoder keeps 256 word pieces
# (~1000 characters of English) and reads from the start, so a relay turn's
# task and latest tool result must both fit in that window; a task turn has it
# to itself. The cap also bounds the work on a huge turn (a 1 MB tool result).
TASK_CHARS = 4000
RELAY_TASK_CHARS = 600
LATEST_CHARS = 400
KEY_CHARS = 4000  # of the task's text in the loop's key


@dataclass(frozen=True)
class LoopState:
    route: Route
    model: str  # the configured model name (a key of `models:`) that answered


def _visible(content: Any, limit: int) -> str:
    """The text of a message `content` without the client's reminder blocks, at
    most `limit` characters; reads only as much of the parts as it needs."""
    if isinstance(content, str):
        parts: list[Any] = [content]
    elif isinstance(content, list):
        parts = content
    else:
        return ""
    out: list[str] = []
    size = 0
    for part in parts:
        text = part if isinstance(part, str) else part.get("text") if isinstance(part, dict) else None
        if not isinstance(text, str):
            continue
        text = strip_reminders(text).strip()
        if not text:
            continue
        out.append(text[: limit - size])
        size += len(out[-1]) + 1
        if size >= limit:
            break
    return "\n".join(out)[:limit]


def strip_reminders(text: str) -> str:
    """`text` without `<system-reminder>…</system-reminder>` spans (found with
    str.find, linear in the text; an unclosed tag keeps the rest as is)."""
    if _REMINDER_OPEN not in text:
        return text
    out, pos = [], 0
    while True:
        start = text.find(_REMINDER_OPEN, pos)
        if start < 0:
            break
        end = text.find(_REMINDER_CLOSE, start)
        if end < 0:
            break
        out.append(text[pos:start])
        pos = end + len(_REMINDER_CLOSE)
    out.append(text[pos:])
    return "".join(out)


def _is_result(m: dict[str, Any]) -> bool:
    return m.get("role") in _RESULT_ROLES


def _calls(m: dict[str, Any]) -> bool:
    return m.get("role") == "assistant" and bool(m.get("tool_calls") or m.get("function_call"))


def _counts(m: dict[str, Any]) -> bool:
    """Whether `m` can be the turn the model answers: not a prefill, not a user
    turn of injected reminders only."""
    role = m.get("role")
    if role == "assistant":
        return False
    if role == "user":
        content = m.get("content")
        media = isinstance(content, list) and any(isinstance(p, dict) and p.get("type") not in (None, "text") for p in content)
        return media or bool(_visible(content, 1))
    return role in _RESULT_ROLES or role not in ("system", "developer")


def _last(messages: list[dict[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if _counts(messages[i]):
            return i
    return None


def offers_tools(body: dict[str, Any]) -> bool:
    return bool(body.get("tools") or body.get("functions"))


def calls_possible(body: dict[str, Any]) -> bool:
    return offers_tools(body) and body.get("tool_choice") != "none" and body.get("function_call") != "none"


def classify(messages: list[dict[str, Any]], body: dict[str, Any]) -> TurnType:
    """The turn's type, from the request alone (see the module docstring)."""
    if not offers_tools(body) and not any(_is_result(m) or _calls(m) for m in messages):
        return "chat"
    last = _last(messages)
    if last is not None and _is_result(messages[last]):
        return "relay" if calls_possible(body) else "summary"
    return "task"


def task_index(messages: list[dict[str, Any]]) -> int | None:
    """The user turn that opened the current task: the last one with text of its own."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user" and _visible(messages[i].get("content"), 1):
            return i
    return None


def task_text(messages: list[dict[str, Any]], limit: int = TASK_CHARS) -> str:
    i = task_index(messages)
    return "" if i is None else _visible(messages[i].get("content"), limit)


def latest_text(messages: list[dict[str, Any]], limit: int = LATEST_CHARS) -> str:
    """The turn just added: the tool results (and any note) after the model's last call."""
    out: list[str] = []
    size = 0
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") == "assistant":
            break
        text = _visible(m.get("content"), limit - size)
        if text:
            out.append(text)
            size += len(text) + 1
        if size >= limit:
            break
    return "\n".join(reversed(out))[:limit]


def routing_messages(messages: list[dict[str, Any]], turn: TurnType) -> list[dict[str, Any]]:
    """What the difficulty router (embedder and classifier) reads of a turn.

    A chat turn: the messages as they are (policies.features.conversation_text
    bounds them, and trained artifacts expect exactly that). An agent turn: the
    task and, on a relay or summary, the latest tool results, bounded; never the
    system prompt and tool list that every turn of every session shares and that
    would fill the encoder's window on its own."""
    if turn == "chat":
        return messages
    if turn == "task":
        return [{"role": "user", "content": task_text(messages, TASK_CHARS)}]
    return [
        {"role": "user", "content": task_text(messages, RELAY_TASK_CHARS)},
        {"role": "tool", "content": latest_text(messages, LATEST_CHARS)},
    ]


def loop_id(tenant: str, session: str, messages: list[dict[str, Any]]) -> str:
    """One task of one session, scoped by tenant and hashed: the same across the
    turns of the loop (the history only grows), new with the next user task."""
    task = task_text(messages, KEY_CHARS)
    return hashlib.sha256(f"{tenant}\x00loop\x00{session}\x00{task}".encode()).hexdigest()[:24]


def remembered(prior: LoopState | None, final: LoopState) -> LoopState:
    """The loop's state after a turn: what answered, except that a fast answer
    (the relay tier, a fallback) never moves a reasoning loop down."""
    if prior is not None and prior.route == "reasoning" and final.route == "fast":
        return prior
    return final


def relay_applies(relay: str, turn: TurnType, route: Route) -> bool:
    """Whether the relay tier (`routing.agent.relay: fast | budget`) takes this turn:
    a relay turn that would reason."""
    return relay != "off" and turn == "relay" and route == "reasoning"


def relay_route(relay: str, turn: TurnType, route: Route) -> Route:
    """`routing.agent.relay: fast` sends a relay turn that would reason to the fast model."""
    return "fast" if relay == "fast" and relay_applies(relay, turn, route) else route
