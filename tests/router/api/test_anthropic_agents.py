"""What Claude Code 2.x sends to /v1/messages (captured from `claude -p` 2.1.337 against a
recording server), field by field, under issue 22's rule: honoured where thinkgate can,
accepted, dropped before the upstream and named in the decision record where the answer
does not depend on it, refused (Anthropic's error shape) only where it would."""

from __future__ import annotations

from typing import Any

from router.api.anthropic_request import CLEARED
from tests.router.api.test_anthropic import BASIC, assert_anthropic_error
from tests.router.test_app import make, settings

DEBUG = {"x-thinkgate-debug": "1"}
READ = {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}


def big() -> Any:
    # Claude Code's bodies are large; the test settings' 4 KiB body limit is not the subject here
    return settings(server={"max_body_bytes": 1 << 20})


async def post(client: Any, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = await client.post("/v1/messages", json=body, headers={**DEBUG, **headers})
    assert r.status_code == 200, r.text
    return r.json()


async def test_system_turns_inside_messages_fold_into_the_system_prompt_in_order():
    client, ups = make(big())
    body = {**BASIC, "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "hi there"},
                {"role": "system", "content": [{"type": "text", "text": "# Environment\ncwd: /tmp", "cache_control": {"type": "ephemeral"}}]},
                {"role": "system", "content": "second"},
            ]}  # fmt: skip
    out = await post(client, body)
    sent = ups["fast"].calls[-1]["messages"]
    assert sent == [
        {"role": "system", "content": "be brief\n\n# Environment\ncwd: /tmp\n\nsecond"},
        {"role": "user", "content": "hi there"},
    ]
    assert "cache_control" in out["thinkgate"]["dropped"]
    # a system turn is no conversation: messages of system turns only is refused
    r = await client.post("/v1/messages", json={**BASIC, "messages": [{"role": "system", "content": "x"}]})
    assert "user or assistant turn" in assert_anthropic_error(r, 400, "invalid_request_error")
    r = await client.post("/v1/messages", json={**BASIC, "messages": [{"role": "tool", "content": "x"}]})
    assert "'system'" in assert_anthropic_error(r, 400, "invalid_request_error")
    r = await client.post("/v1/messages", json={**BASIC, "messages": [{"role": "system", "content": [{"type": "image"}]}, *BASIC["messages"]]})
    assert_anthropic_error(r, 400, "invalid_request_error")


async def test_context_management_clear_thinking_is_honoured_and_recorded():
    client, ups = make(big())
    body = {**BASIC, "model": "pinned", "thinking": {"type": "adaptive", "display": "omitted"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "messages": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "secret", "signature": "s"}, {"type": "text", "text": "a1"}]},
                {"role": "user", "content": "q2"},
            ]}  # fmt: skip
    out = await post(client, body)
    sent = ups["reasoning"].calls[-1]
    assert "context_management" not in sent and "secret" not in str(sent["messages"])
    assert "context_management.clear_thinking" in out["thinkgate"]["dropped"]
    for bad in ({"edits": [{"type": "compact_everything"}]}, {"edits": "all"}, "x"):
        r = await client.post("/v1/messages", json={**BASIC, "context_management": bad})
        assert "context_management" in assert_anthropic_error(r, 400, "invalid_request_error")


def _tool_history(n: int, size: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "start"}]
    for i in range(n):
        msgs.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "Read" if i else "Grep", "input": {"i": i}}]})
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": f"r{i} " + "x" * size}]})
    return msgs


async def test_context_management_clear_tool_uses_is_applied_past_its_trigger():
    client, ups = make(big())
    edit = {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 100},
            "keep": {"type": "tool_uses", "value": 1}, "exclude_tools": ["Grep"], "clear_tool_inputs": True}  # fmt: skip
    out = await post(client, {**BASIC, "messages": _tool_history(4, 200), "context_management": {"edits": [edit]}})
    tools = [m for m in ups["fast"].calls[-1]["messages"] if m["role"] == "tool"]
    # t0 is a Grep (excluded), t3 the one kept; t1 and t2 cleared, inputs too
    assert [m["content"].startswith(f"r{i} ") for i, m in enumerate(tools)] == [True, False, False, True]
    assert tools[1]["content"] == CLEARED == tools[2]["content"]
    calls = [m for m in ups["fast"].calls[-1]["messages"] if m.get("tool_calls")]
    assert calls[1]["tool_calls"][0]["function"]["arguments"] == "{}" and calls[0]["tool_calls"][0]["function"]["arguments"] == '{"i": 0}'
    assert "context_management.clear_tool_uses: 2 tool results" in out["thinkgate"]["dropped"]
    # under the trigger (default 100000 tokens) nothing is cleared
    edit = {"type": "clear_tool_uses_20250919"}
    await post(client, {**BASIC, "messages": _tool_history(4, 200), "context_management": {"edits": [edit]}})
    assert CLEARED not in str(ups["fast"].calls[-1]["messages"])
    r = await client.post("/v1/messages", json={**BASIC, "context_management": {"edits": [{**edit, "keep": 3}]}})
    assert "keep" in assert_anthropic_error(r, 400, "invalid_request_error")


async def test_every_thinking_display_is_accepted():
    client, ups = make(big())
    for display in ("summarized", "omitted", "updates", "full", "something-new"):
        out = await post(client, {**BASIC, "model": "pinned", "thinking": {"type": "adaptive", "display": display}})
        assert out["content"][0]["type"] == "thinking"
        assert out["content"][0]["thinking"] == ("" if display == "omitted" else "think hard")
        shown = [x for x in out["thinkgate"]["dropped"] or [] if x.startswith("thinking.display")]
        if display in ("summarized", "omitted"):  # honoured as asked: nothing to record
            assert shown == []
        else:  # streamed as summarized, and recorded
            assert len(shown) == 1 and display in shown[0]
    r = await client.post("/v1/messages", json={**BASIC, "thinking": {"type": "adaptive", "display": 3}})
    assert "display" in assert_anthropic_error(r, 400, "invalid_request_error")


async def test_anthropic_beta_header_and_query_and_cache_control_everywhere():
    client, ups = make(big())
    body = {**BASIC, "cache_control": {"type": "ephemeral"},
            "tools": [{**READ, "cache_control": {"type": "ephemeral"}, "input_examples": [{"file_path": "/x"}]}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}, "cache_control": {"type": "ephemeral"}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok", "cache_control": {"type": "ephemeral"}}]}]}  # fmt: skip
    r = await client.post("/v1/messages?beta=true", json=body, headers={**DEBUG, "anthropic-beta": "claude-code-20250219,context-management-2025-06-27"})
    assert r.status_code == 200, r.text
    dropped = r.json()["thinkgate"]["dropped"]
    assert {"cache_control", "tools.cache_control", "tools.input_examples"} <= set(dropped)
    assert any(x.startswith("anthropic-beta: claude-code-20250219") for x in dropped)
    sent = ups["fast"].calls[-1]
    assert "cache_control" not in str(sent) and "input_examples" not in str(sent)
    assert sent["tools"] == [{"type": "function", "function": {"name": "Read", "parameters": READ["input_schema"], "description": "Read a file"}}]


async def test_deferred_tools_wait_for_a_tool_reference_and_strict_is_honoured():
    client, ups = make(big())
    later = {"name": "Later", "input_schema": {"type": "object"}, "defer_loading": True}
    body = {**BASIC, "tools": [{**READ, "strict": True}, later]}
    out = await post(client, body)
    assert [t["function"]["name"] for t in ups["fast"].calls[-1]["tools"]] == ["Read"]
    assert ups["fast"].calls[-1]["tools"][0]["function"]["strict"] is True
    assert "tools.defer_loading" in out["thinkgate"]["dropped"]
    # the client's tool search answered with a tool_reference: the tool is offered from then on
    body["messages"] = [
        {"role": "user", "content": "find a tool"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "s1", "name": "ToolSearch", "input": {"query": "later"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "s1", "content": [{"type": "tool_reference", "tool_name": "Later"}]}]},
    ]
    await post(client, body)
    sent = ups["fast"].calls[-1]
    assert [t["function"]["name"] for t in sent["tools"]] == ["Read", "Later"]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "s1", "content": "Tool Later is now available."}


async def test_claude_code_first_request_as_captured():
    """The shape of Claude Code 2.1.337's first request (texts shortened): every field
    accepted, the upstream body plain OpenAI, the record naming what was dropped."""
    body = {
        "model": "claude-opus-5-5", "max_tokens": 128000, "stream": False,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.337"},
                   {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"}, {"type": "text", "text": "say hi"}]},
                     {"role": "system", "content": [{"type": "text", "text": "# Environment", "cache_control": {"type": "ephemeral"}}]}],
        "tools": [READ, {"name": "DeferredToolPlaceholder", "defer_loading": True, "input_schema": {"type": "object", "properties": {}}}],
        "metadata": {"user_id": '{"device_id":"abc","account_uuid":"","session_id":"d1"}'},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
    }  # fmt: skip
    client, ups = make(settings(server={"max_body_bytes": 1 << 20}, routes={"auto": {}, "claude-*": {}}))
    r = await client.post("/v1/messages?beta=true", json=body, headers={**DEBUG, "anthropic-beta": "claude-code-20250219"})
    assert r.status_code == 200, r.text
    d = r.json()["thinkgate"]
    assert d["alias"] == "claude-opus-5-5" and d["alias_pattern"] == "claude-*"
    assert d["clamped"] == "max_tokens 128000 -> 32768 (limits.max_tokens)" == r.headers["x-thinkgate-clamped"]
    sent = ups["fast"].calls[-1]
    assert sent["max_tokens"] == 32768 and sent["model"] == "fast-model"
    assert sent["user"].startswith("tg-") and "device_id" not in sent["user"]  # hashed by default
    assert set(sent) <= {"model", "messages", "max_tokens", "tools", "user", "stream", "stream_options"}
    assert {"cache_control", "context_management.clear_thinking", "output_config.effort", "tools.defer_loading"} <= set(d["dropped"])
