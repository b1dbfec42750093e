"""The Vercel AI SDK (`ai` 7 on node 22) through a real `thinkgate serve`: generateText and
streamText with a tool loop through @ai-sdk/openai's default Responses path with `store`
on (later turns send item_reference for what thinkgate returned) and off (reasoning
sent back with encrypted_content), through `.chat()`, and through @ai-sdk/anthropic.
Each on the fast and the reasoning route; zero refused requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.components import missing
from tests.e2e.agents.agent_gateway import NOTE, agent_gateway, setup_home
from tests.e2e.agents.clients import CLIENTS, run, tool

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "node" / "ai_sdk_tool_loop.mjs"
CASES = [
    (provider, mode, model)
    for provider in ("responses-store", "responses-nostore", "chat", "anthropic")
    for mode in ("generate", "stream")
    # the Responses paths on both routes (the reasoning route is where item_reference and
    # encrypted_content come in); chat and anthropic on the reasoning route, whose thinking
    # must not reach the strict upstream as input
    for model in (("fast", "reasoning") if provider.startswith("responses") else ("reasoning",))
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("aisdk")
    home, work = setup_home(tmp)
    node = tool("node")
    for pkg in ("ai", "@ai-sdk/openai", "@ai-sdk/anthropic"):
        if not (CLIENTS / "node_modules" / pkg).is_dir():
            missing(f"{pkg} is not in {CLIENTS}: run scripts/setup_agent_clients.sh")
    # ESM resolves packages from the script's folder up: the script beside a node_modules link
    (work / "node_modules").symlink_to(CLIENTS / "node_modules")
    shutil.copy(SCRIPT, work / SCRIPT.name)
    with agent_gateway(work, tmp) as gw:
        yield gw, node, home, work


@pytest.mark.parametrize("provider, mode, model", CASES)
def test_ai_sdk_tool_loop(gateway, provider: str, mode: str, model: str):
    gw, node, home, work = gateway
    seen_before, log_before = len(gw.upstream.requests), len(gw.proxy.log)
    out = run([str(node), SCRIPT.name, gw.url, provider, mode, model], cwd=work, home=home, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["calls"] == ["read_note"] and got["results"] == [NOTE], got
    assert got["text"] == f"The tool said: {NOTE}", got
    # the tool's output reached the upstream through thinkgate
    sent = gw.upstream.requests[seen_before:]
    assert any(m.get("role") == "tool" and NOTE in str(m.get("content")) for b in sent for m in b["messages"])
    session = gw.proxy.log[log_before:]
    path = (
        "/v1/messages" if provider == "anthropic" else "/v1/chat/completions" if provider == "chat" else "/v1/responses"
    )
    assert [p for _, p, _s in session] == [path, path], session
    assert [s for _, _p, s in session] == [200, 200], session  # nothing refused
    assert gw.upstream.rejected == []
    assert not [w for w in got["warnings"] if "reasoning" in w.lower()], got["warnings"]
    if model == "reasoning" and provider.startswith("responses"):
        # the second turn sent thinkgate's own reasoning item back: by reference from the
        # store, or (store off) whole with its encrypted_content
        second = [
            i
            for i in json.loads(gw.proxy.bodies[log_before + 1])["input"]
            if i.get("type") in ("reasoning", "item_reference")
        ]
        if provider == "responses-store":
            assert [i["type"] for i in second] == ["item_reference"] and second[0]["id"].startswith("rs_"), second
        else:
            assert [i["type"] for i in second] == ["reasoning"] and second[0]["encrypted_content"].startswith("tg1."), (
                second
            )
