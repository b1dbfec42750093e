"""policies.conversation: the conversation id and how an earlier route bends a turn's."""

from __future__ import annotations

from typing import Any

import pytest

from policies.conversation import conversation_id, decide, remembered
from router.types import Caller, ChatRequest


def req(turns: list[str], system: str = "be brief", tenant: str = "t", headers: dict[str, str] | None = None, **body: Any) -> ChatRequest:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for i, t in enumerate(turns):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": t})
    return ChatRequest(endpoint="chat", alias="auto", body={"messages": msgs, **body}, messages=msgs,
                       caller=Caller(tenant=tenant), headers=headers or {})


def test_the_fingerprint_follows_a_chat_across_turns_and_separates_chats():
    one, _ = conversation_id(req(["write a sort"]))
    two, src = conversation_id(req(["write a sort", "def sort()...", "and now in Python?"]))
    assert one == two and src == "fingerprint"
    assert conversation_id(req(["write a parser"]))[0] != one
    assert conversation_id(req(["write a sort"], system="other"))[0] != one
    assert conversation_id(req(["write a sort"], tenant="u"))[0] != one  # tenants never share


@pytest.mark.parametrize(
    ("kw", "source"),
    [
        ({"headers": {"x-thinkgate-session": "s1"}, "user": "bob", "metadata": {"session_id": "m"}}, "header"),
        ({"user": "bob", "metadata": {"session_id": "m"}, "prompt_cache_key": "k"}, "metadata"),
        ({"user": "bob", "prompt_cache_key": "k"}, "prompt_cache_key"),
        ({"user": "bob"}, "user"),
    ],
)
def test_what_the_client_sends_names_the_conversation_in_order(kw: dict[str, Any], source: str):
    cid, src = conversation_id(req(["a"], **kw))
    assert src == source
    assert conversation_id(req(["something else entirely"], **kw))[0] == cid  # the turns do not matter
    assert "bob" not in cid  # hashed


def test_independent_never_bends():
    assert decide("independent", "reasoning", "fast", 0.1, 0.5, 0.3) == ("fast", False)


def test_monotone_moves_up_never_down():
    assert decide("monotone", None, "fast", 0.1, 0.5, 0.3) == ("fast", False)
    assert decide("monotone", "fast", "reasoning", 0.6, 0.5, 0.3) == ("reasoning", False)
    assert decide("monotone", "reasoning", "fast", 0.0, 0.5, 0.3) == ("reasoning", True)
    assert remembered("monotone", "reasoning", "fast") == "reasoning"
    assert remembered("monotone", "fast", "reasoning") == "reasoning"  # an escalation lifts it


def test_sticky_holds_unless_the_classifier_is_margin_past_its_cut():
    assert decide("sticky", "fast", "reasoning", 0.6, 0.5, 0.3) == ("fast", True)
    assert decide("sticky", "fast", "reasoning", 0.8, 0.5, 0.3) == ("reasoning", False)
    assert decide("sticky", "reasoning", "fast", 0.3, 0.5, 0.3) == ("reasoning", True)
    assert decide("sticky", "reasoning", "fast", 0.2, 0.5, 0.3) == ("fast", False)
    assert decide("sticky", "reasoning", "fast", None, None, 0.3) == ("reasoning", True)  # no P: hold
    assert decide("sticky", None, "reasoning", 0.6, 0.5, 0.3) == ("reasoning", False)
