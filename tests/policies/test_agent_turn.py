"""The agent-turn classifier and the loop policy, pure (policies/agent_turn.py)."""

from __future__ import annotations

import time
from typing import Any

from policies import agent_turn as at
from policies.features import conversation_text

TOOLS = [{"type": "function", "function": {"name": "read", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]
SYSTEM = {"role": "system", "content": "You are a coding agent. " * 2000}  # ~48k characters, as agents send


def call(i: int = 1) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"call_{i}", "type": "function", "function": {"name": "read", "arguments": "{}"}}]}  # fmt: skip


def result(text: str, i: int = 1) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": f"call_{i}", "content": text}


def test_plain_chat_without_tools_is_chat():
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert at.classify(msgs, {}) == "chat"
    assert at.classify(msgs + [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "and?"}], {}) == "chat"


def test_a_user_turn_with_tools_offered_is_a_task():
    assert at.classify([SYSTEM, {"role": "user", "content": "fix the test"}], {"tools": TOOLS}) == "task"
    # a follow-up after a finished loop is a new task
    msgs = [SYSTEM, {"role": "user", "content": "fix"}, call(), result("ok"), {"role": "assistant", "content": "done"},
            {"role": "user", "content": "now the docs"}]  # fmt: skip
    assert at.classify(msgs, {"tools": TOOLS}) == "task"
    # tools no longer offered but the history has a loop: still an agent session's task
    assert at.classify(msgs, {}) == "task"


def test_a_tool_result_last_is_a_relay_while_more_calls_are_possible():
    msgs = [SYSTEM, {"role": "user", "content": "fix"}, call(), result("file contents")]
    assert at.classify(msgs, {"tools": TOOLS}) == "relay"
    assert at.classify(msgs, {"tools": TOOLS, "tool_choice": "auto"}) == "relay"
    # parallel calls: several results in a row
    msgs2 = [SYSTEM, {"role": "user", "content": "fix"}, call(1), result("a", 1), result("b", 2)]
    assert at.classify(msgs2, {"tools": TOOLS}) == "relay"
    # legacy function calling
    legacy = [{"role": "user", "content": "x"}, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
              {"role": "function", "name": "f", "content": "42"}]  # fmt: skip
    assert at.classify(legacy, {"functions": [{"name": "f"}]}) == "relay"


def test_a_tool_result_last_with_no_further_call_possible_is_a_summary():
    msgs = [SYSTEM, {"role": "user", "content": "fix"}, call(), result("file contents")]
    assert at.classify(msgs, {}) == "summary"
    assert at.classify(msgs, {"tools": TOOLS, "tool_choice": "none"}) == "summary"


def test_injected_reminders_and_prefills_do_not_count_as_the_last_turn():
    # Anthropic tool_result + a reminder text block: the front end gives a tool turn, then a user turn
    reminder = {"role": "user", "content": [{"type": "text", "text": "<system-reminder>\nTodo list is empty\n</system-reminder>"}]}
    msgs = [SYSTEM, {"role": "user", "content": "fix"}, call(), result("contents"), reminder]
    assert at.classify(msgs, {"tools": TOOLS}) == "relay"
    # a user turn with text beside the reminder is the user's own: a task
    own = {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"}, {"type": "text", "text": "stop, do y"}]}
    assert at.classify([*msgs[:-1], own], {"tools": TOOLS}) == "task"
    # an image-only user turn is the user's too
    img = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    assert at.classify([*msgs[:-1], img], {"tools": TOOLS}) == "task"
    # an assistant prefill after the result
    assert at.classify([*msgs[:-1], {"role": "assistant", "content": "The file"}], {"tools": TOOLS}) == "relay"


def test_the_task_is_the_last_user_turn_with_text_of_its_own_without_reminders():
    first = {"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\n# claudeMd\n" + "project rules " * 500 + "</system-reminder>"},
        {"type": "text", "text": "Rename foo to bar in utils.py"},
    ]}  # fmt: skip
    msgs = [SYSTEM, first, call(), result("def foo(): ..."), {"role": "user", "content": "<system-reminder>r</system-reminder>"}]
    assert at.task_text(msgs) == "Rename foo to bar in utils.py"
    assert at.latest_text(msgs) == "def foo(): ..."


def test_what_the_router_reads_of_an_agent_turn_is_the_task_and_the_latest_turn_bounded():
    task = {"role": "user", "content": "Why does test_parse fail?"}
    huge = "E" * 1_000_000
    msgs = [SYSTEM, task, call(), result(huge)]
    view = at.routing_messages(msgs, "relay")
    text = conversation_text(view)
    assert text.startswith("Why does test_parse fail?")
    assert "coding agent" not in text  # the shared system prompt is not read
    assert len(text) <= at.RELAY_TASK_CHARS + at.LATEST_CHARS + 20
    assert "[tool] EEEE" in text  # the latest result is read, after the task, within ~1000 characters
    # a task turn: the task alone
    assert conversation_text(at.routing_messages([SYSTEM, task], "task")) == "Why does test_parse fail?"
    # chat is untouched (the trained artifacts read exactly conversation_text(messages))
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert at.routing_messages(chat, "chat") is chat


def test_bounded_work_on_hostile_sizes():
    # many unclosed reminder tags and a 5 MB task: linear, well under a second
    evil = "<system-reminder>" * 200_000 + "x" * 5_000_000
    msgs = [{"role": "user", "content": evil}, call(), result("<system-reminder>" * 100_000)]
    t = time.perf_counter()
    assert at.classify(msgs, {"tools": TOOLS}) == "relay"
    view = at.routing_messages(msgs, "relay")
    at.loop_id("t", "s", msgs)
    assert time.perf_counter() - t < 1.0
    assert len(view[0]["content"]) <= at.RELAY_TASK_CHARS and len(view[1]["content"]) <= at.LATEST_CHARS


def test_a_loop_id_is_stable_across_its_turns_and_new_with_the_next_task_or_tenant():
    t1 = [SYSTEM, {"role": "user", "content": "fix"}]
    t2 = [*t1, call(), result("a")]
    t3 = [*t2, call(2), result("b", 2)]
    ids = {at.loop_id("acme", "s1", m) for m in (t1, t2, t3)}
    assert len(ids) == 1
    nxt = [*t3, {"role": "assistant", "content": "done"}, {"role": "user", "content": "now docs"}]
    assert at.loop_id("acme", "s1", nxt) not in ids
    assert at.loop_id("globex", "s1", t2) not in ids
    assert at.loop_id("acme", "s2", t2) not in ids


def test_a_loop_moves_up_never_down():
    fast, reasoning = at.LoopState("fast", "fast"), at.LoopState("reasoning", "reasoning")
    assert at.remembered(None, fast) == fast
    assert at.remembered(fast, reasoning) == reasoning  # a Self-Ref escalation lifts the loop
    assert at.remembered(reasoning, fast) == reasoning  # a relay-tier or fallback answer does not lower it
    other = at.LoopState("reasoning", "reasoning-b")
    assert at.remembered(reasoning, other) == other


def test_the_relay_tier_takes_only_relay_turns_that_would_reason():
    assert at.relay_route("fast", "relay", "reasoning") == "fast"
    assert at.relay_route("fast", "summary", "reasoning") == "reasoning"
    assert at.relay_route("fast", "task", "reasoning") == "reasoning"
    assert at.relay_route("off", "relay", "reasoning") == "reasoning"
    assert at.relay_route("budget", "relay", "reasoning") == "reasoning"
    assert at.relay_applies("budget", "relay", "reasoning") and not at.relay_applies("budget", "relay", "fast")
    assert not at.relay_applies("off", "relay", "reasoning") and not at.relay_applies("fast", "summary", "reasoning")
