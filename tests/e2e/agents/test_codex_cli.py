"""Codex CLI (`codex exec`, Responses API only) through a real `thinkgate serve`: a text
turn, and a shell-tool round trip in its read-only sandbox, with zero refused requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentGateway, Path]]:
    tool("codex")  # skips (or fails in CI) before a gateway is started for nothing
    tmp = tmp_path_factory.mktemp("codex")
    _, work = setup_home(tmp)
    with agent_gateway(work, tmp) as gw:
        yield gw, work


def _session(gw: AgentGateway, before: int) -> tuple[list[tuple[str, str, int]], list[dict]]:
    """This test's requests (method, path, status) and their JSON bodies."""
    return gw.proxy.log[before:], [json.loads(b) for b in gw.proxy.bodies[before:]]


def test_codex_exec_text(gateway: tuple[AgentGateway, Path], tmp_path: Path):
    gw, work = gateway
    before = len(gw.proxy.log)
    _, events = _codex(gw, tmp_path, work, "Say hello.", "auto")
    assert "Hello from the scripted upstream." in _final_text(events)
    log, bodies = _session(gw, before)
    assert log and all(p == "/v1/responses" and s == 200 for _, p, s in log), log  # nothing refused
    # what made Codex 0.171 unusable before was really sent, and accepted
    first = bodies[0]
    kinds = {t["type"] for t in first["tools"]}
    assert {"function", "namespace", "web_search"} <= kinds, kinds
    assert "client_metadata" in first and first["store"] is False
    assert first["include"] == ["reasoning.encrypted_content"]
    assert gw.upstream.rejected == []


@pytest.mark.parametrize("model", ["fast", "reasoning"])
def test_codex_exec_shell_tool_round_trip(gateway: tuple[AgentGateway, Path], tmp_path: Path, model: str):
    gw, work = gateway
    before, seen = len(gw.proxy.log), len(gw.upstream.requests)
    _, events = _codex(gw, tmp_path, work, "Print the contents of notes.txt.", model)
    ran = [
        e["item"] for e in events if e.get("type") == "item.completed" and e["item"].get("type") == "command_execution"
    ]
    assert ran and "cat notes.txt" in ran[0]["command"] and NOTE in ran[0]["aggregated_output"], events
    # the command's output went back through thinkgate to the upstream, and its answer came back
    sent = gw.upstream.requests[seen:]
    assert any(NOTE in str(m.get("content")) for b in sent for m in b["messages"] if m["role"] == "tool")
    assert NOTE in _final_text(events)
    log, bodies = _session(gw, before)
    assert len(log) >= 2 and all(p == "/v1/responses" and s == 200 for _, p, s in log), log  # nothing refused
    if model == "reasoning":
        # store: false: Codex sent thinkgate's reasoning item back whole, with its encrypted_content
        back = [i for i in bodies[1]["input"] if i.get("type") == "reasoning"]
        assert back and back[0]["encrypted_content"].startswith("tg1."), back
    assert gw.upstream.rejected == []
