"""Codex CLI (`codex exec`, Responses API only) through a real `thinkgate serve`: a text
turn, and a shell-tool round trip in its read-only sandbox, with zero refused requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.agents.agent_gateway import NOTE, AgentGateway, agent_gateway, setup_home
from tests.e2e.agents.clients import run, tool

pytestmark = pytest.mark.slow

# the README's "Coding agents: Codex CLI" set-up, with the test's URL
CODEX_CONFIG = """\
model = "{model}"
model_provider = "thinkgate"
check_for_update_on_startup = false

[model_providers.thinkgate]
name = "thinkgate"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "THINKGATE_API_KEY"

[analytics]
enabled = false

[feedback]
enabled = false

[history]
persistence = "none"
"""


def _codex(gw: AgentGateway, home: Path, work: Path, prompt: str, model: str) -> tuple[str, list[dict]]:
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(url=gw.url, model=model))
    out = run(
        [str(tool("codex")), "exec", "--json", "--skip-git-repo-check", "--sandbox", "read-only", prompt],
        cwd=work, home=home, env={"CODEX_HOME": str(codex_home), "THINKGATE_API_KEY": "unused"},
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return out.stdout, events


def _final_text(events: list[dict]) -> str:
    return "".join(
        e["item"].get("text", "")
        for e in events
        if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"
    )


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return setup_home(tmp_path)


def test_codex_exec_text(tmp_path: Path, dirs: tuple[Path, Path]):
    home, work = dirs
    with agent_gateway(work, tmp_path) as gw:
        _, events = _codex(gw, home, work, "Say hello.", "auto")
    assert "Hello from the scripted upstream." in _final_text(events)
    assert gw.proxy.log and gw.proxy.refused() == [], gw.proxy.log
    assert any(p == "/v1/responses" for _, p, _s in gw.proxy.log)
    assert gw.upstream.rejected == []


@pytest.mark.parametrize("model", ["fast", "reasoning"])
def test_codex_exec_shell_tool_round_trip(tmp_path: Path, dirs: tuple[Path, Path], model: str):
    home, work = dirs
    with agent_gateway(work, tmp_path) as gw:
        _, events = _codex(gw, home, work, "Print the contents of notes.txt.", model)
    ran = [
        e["item"] for e in events if e.get("type") == "item.completed" and e["item"].get("type") == "command_execution"
    ]
    assert ran and "cat notes.txt" in ran[0]["command"] and NOTE in ran[0]["aggregated_output"], events
    # the command's output went back through thinkgate to the upstream, and its answer came back
    assert any(NOTE in r for r in gw.upstream.tool_results()), gw.upstream.requests[-1]["messages"][-2:]
    assert NOTE in _final_text(events)
    assert gw.proxy.refused() == [], gw.proxy.log
    assert len([e for e in gw.proxy.log if e[1] == "/v1/responses"]) >= 2
    assert gw.upstream.rejected == []
