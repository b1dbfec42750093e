"""opencode (`opencode run`) through a real `thinkgate serve` as an OpenAI-compatible
provider: its own `read` tool reads notes.txt, the result goes back through thinkgate,
and no request of the session is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.agents.agent_gateway import NOTE, agent_gateway, setup_home
from tests.e2e.agents.clients import run, tool

pytestmark = pytest.mark.slow


# the README's "Coding agents: opencode" set-up (opencode.json), with the test's URL
def opencode_config(url: str, npm: str = "@ai-sdk/openai-compatible") -> dict:
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "thinkgate": {
                "npm": npm,
                "name": "thinkgate",
                "options": {"baseURL": f"{url}/v1", "apiKey": "{env:THINKGATE_API_KEY}"},
                "models": {"auto": {"name": "thinkgate auto", "tool_call": True}},
            }
        },
        "model": "thinkgate/auto",
        "small_model": "thinkgate/auto",
        "autoupdate": False,
        "share": "disabled",
        "permission": {"edit": "deny", "bash": "deny", "webfetch": "deny"},
    }


OPENCODE_ENV = {
    "THINKGATE_API_KEY": "unused",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_SHARE": "1",
}


# the openai-compatible provider talks chat completions; @ai-sdk/openai (also bundled) the Responses API
@pytest.mark.parametrize(
    "npm, path", [("@ai-sdk/openai-compatible", "/v1/chat/completions"), ("@ai-sdk/openai", "/v1/responses")]
)
def test_opencode_run_read_tool_round_trip(tmp_path: Path, npm: str, path: str):
    home, work = setup_home(tmp_path)
    opencode = tool("opencode")
    with agent_gateway(work, tmp_path) as gw:
        (work / "opencode.json").write_text(json.dumps(opencode_config(gw.url, npm)))
        out = run([str(opencode), "run", "--format", "json", "What does notes.txt say?"], cwd=work, home=home,
                  env=OPENCODE_ENV)  # fmt: skip
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    tools = [e for e in events if e.get("type") == "tool_use"]
    assert tools and tools[0]["part"]["tool"] == "read", events
    assert NOTE in json.dumps(tools[0]["part"]["state"].get("output")), tools[0]
    assert any(NOTE in r for r in gw.upstream.tool_results())
    texts = "".join(e["part"].get("text", "") for e in events if e.get("type") == "text")
    assert NOTE in texts, events
    assert gw.proxy.log and gw.proxy.refused() == [], gw.proxy.log
    assert {p for _, p, _s in gw.proxy.log} == {path}, gw.proxy.log
    assert gw.upstream.rejected == []
