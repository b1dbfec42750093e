"""A scripted coding agent for tests and bench/agent_turns.py: it runs tool loops
through a real gateway app and records every turn it sent and what the gateway
answered (turn type, route, model, reason), like a client would see them.

The upstream plays the model: with tools offered it calls `read` until the
task's step count is reached, then answers in text. Tasks name their own
difficulty ("hard ..." scores P 0.7 in `TaskClassifier`, else 0.2); tool results
can say "hard" too, so a classifier that re-read every turn would move the loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from router.upstreams.fake import FakeReply

TOOLS = [{"type": "function", "function": {"name": "read", "description": "read a file",
                                           "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]  # fmt: skip
# what every turn of every session shares: a long system prompt (agents send ~20k tokens)
SYSTEM = "You are a coding agent working in a repository. Follow the rules. " * 400


@dataclass
class Task:
    text: str
    results: list[str]  # what each tool call returns, in order; the model then answers
    summary: bool = False  # the client sends the last turn without tools (a summary turn)
    low_confidence_at: int | None = None  # the fast model is unsure on this relay (Self-Ref escalates)


@dataclass
class Turn:
    sent: dict[str, Any]
    turn: str
    route: str
    model: str
    reason: str
    cache: str
    difficulty: float | None
    status: int


@dataclass
class Session:
    turns: list[Turn] = field(default_factory=list)

    def of(self, kind: str) -> list[Turn]:
        return [t for t in self.turns if t.turn == kind]


def _tool_results_since_user(messages: list[dict[str, Any]]) -> int:
    n = 0
    for m in reversed(messages):
        if m.get("role") == "user":
            break
        n += m.get("role") == "tool"
    return n


def agent_model(tasks: list[Task]) -> Any:
    """The upstream handler: a model that works through `tasks` by their text."""
    by_text = {t.text: t for t in tasks}

    def handler(body: dict[str, Any]) -> FakeReply:
        msgs = body["messages"]
        user = next(m for m in reversed(msgs) if m.get("role") == "user")
        task = by_text.get(user["content"]) if isinstance(user["content"], str) else None
        if task is None:  # not one of the agent's tasks: a plain chat answer
            return FakeReply("answer")
        done = _tool_results_since_user(msgs)
        if body.get("tools") and done < len(task.results):
            prob = 0.1 if task.low_confidence_at == done else 0.95
            call = {"id": f"call_{done}", "type": "function", "function": {"name": "read", "arguments": json.dumps({"path": f"f{done}.py"})}}
            return FakeReply(f"reading f{done}.py", tool_calls=[call], finish_reason="tool_calls", token_prob=prob)
        prob = 0.1 if task.low_confidence_at == done else 0.95
        return FakeReply(f"done: {task.text}", token_prob=prob)

    return handler


class TaskClassifier:
    """P from what the router reads of the turn; records it (the tests check that
    the shared system prompt never reaches the classifier)."""

    threshold = 0.5

    def __init__(self) -> None:
        self.seen: list[list[dict[str, Any]]] = []

    def predict(self, messages: list[dict[str, Any]], embedding: Any) -> float:
        self.seen.append(messages)
        return 0.7 if any("hard" in str(m.get("content")) for m in messages) else 0.2


class ViewEmbedder:
    """Records the messages it embeds; one constant unit vector."""

    def __init__(self) -> None:
        self.seen: list[list[dict[str, Any]]] = []

    async def embed(self, messages: list[dict[str, Any]], then: Any = None) -> Any:
        self.seen.append(messages)
        v = np.ones(8, dtype=np.float32) / np.sqrt(8)
        return v if then is None else (v, then(v))


async def run(clients: list[httpx.AsyncClient], tasks: list[Task], *, headers: dict[str, str] | None = None,
              temperature: float | None = None) -> Session:  # fmt: skip
    """Run `tasks` one after another in one session; turn i goes to clients[i % len]."""
    session = Session()
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    i = 0
    for task in tasks:
        messages.append({"role": "user", "content": task.text})
        while True:
            last = task.summary and _tool_results_since_user(messages) == len(task.results)
            body: dict[str, Any] = {"model": "auto", "messages": list(messages)}
            if not last:
                body["tools"] = TOOLS
            if temperature is not None:
                body["temperature"] = temperature
            r = await clients[i % len(clients)].post("/v1/chat/completions", json=body, headers={"x-thinkgate-debug": "1", **(headers or {})})
            i += 1
            d = r.json().get("thinkgate") or {}
            session.turns.append(Turn(body, r.headers.get("x-thinkgate-turn", ""), r.headers.get("x-thinkgate-route", ""),
                                      r.headers.get("x-thinkgate-model", ""), d.get("reason", ""), d.get("cache") or r.headers.get("x-thinkgate-cache", ""),
                                      d.get("difficulty"), r.status_code))  # fmt: skip
            if r.status_code != 200:
                return session
            msg = r.json()["choices"][0]["message"]
            messages.append({k: msg[k] for k in ("role", "content", "tool_calls") if msg.get(k) is not None})
            calls = msg.get("tool_calls") or []
            if not calls:
                break
            n = _tool_results_since_user(messages)
            for c in calls:
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": task.results[n]})
    return session
