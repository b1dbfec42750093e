"""Claude Code (`claude -p`, npm @anthropic-ai/claude-code, installed by
scripts/setup_claude_code.sh) through a real `thinkgate serve` whose upstream is a strict
scripted OpenAI-compatible server (scripted_upstream.py), with thinkgate's defaults
except the upstreams: no model name listed for Claude Code (a `claude-*` route pattern
serves whatever it sends), no max_tokens raised (it asks for 128000).

Each run is in a temporary directory as cwd and HOME, with telemetry, update checks and
error reporting off and only the Read tool. A recording proxy between the CLI and the
gateway sees every response: no request of any session may get a 4xx/5xx (Claude Code
retries without a feature after a 400, so an answer alone would hide a refusal)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.components import missing
from tests.e2e.agents.recording_proxy import RecordingProxy
from tests.e2e.agents.scripted_upstream import HELLO, ScriptedUpstream
from tests.e2e.serve import serve

pytestmark = pytest.mark.slow

CLAUDE = Path(os.environ.get("THINKGATE_CLAUDE_CODE", Path.home() / ".cache" / "thinkgate-claude-code")) / "node_modules" / ".bin" / "claude"
SECRET = "the secret word is pineapple"

CONFIG = """
models:
  fast: {{provider: openai, model: scripted-fast, api_base: "{base}", logprobs: false, timeout: 60, max_output_tokens: 8192}}
  reasoning: {{provider: openai, model: scripted-think, api_base: "{base}", reasoning: true, logprobs: false, timeout: 60, max_output_tokens: 8192}}
routes:
  auto: {{fast: fast, reasoning: reasoning, default: fast}}
  "claude-*": {{fast: fast, reasoning: reasoning, default: fast}}
classifier: {{enabled: false}}
selfref: {{enabled: false}}
"""

# the documented switches: no telemetry, error reports, update checks or other traffic
# that is not the model's (nothing outside loopback is reachable anyway)
QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_BUG_COMMAND": "1",
}


@dataclass
class Stack:
    upstream: ScriptedUpstream
    proxy: RecordingProxy
    gateway: str
    tmp: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CLAUDE.exists():
        missing(f"Claude Code is not installed at {CLAUDE} (scripts/setup_claude_code.sh)")
    d = tmp_path_factory.mktemp("claude-code")
    with ScriptedUpstream() as up:
        cfg = d / "thinkgate.yaml"
        cfg.write_text(CONFIG.format(base=up.api_base))
        with serve(d, cfg, timeout=120) as url, RecordingProxy(url) as proxy:
            yield Stack(up, proxy, url, d)


def claude(stack: Stack, prompt: str, *extra: str) -> str:
    """One `claude -p` session in a fresh cwd and HOME; its stdout. Fails when the CLI
    does, or when any request of the session got a 4xx/5xx from thinkgate."""
    n = len(stack.proxy.exchanges)
    run = stack.tmp / f"run{n}"
    home, work = run / "home", run / "work"
    home.mkdir(parents=True)
    work.mkdir()
    (work / "notes.txt").write_text(SECRET + "\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
        "ANTHROPIC_BASE_URL": stack.proxy.url, "ANTHROPIC_API_KEY": "sk-thinkgate-test", **QUIET,
    }  # fmt: skip
    cmd = [str(CLAUDE), "-p", prompt.replace("NOTES", str(work / "notes.txt")),
           "--tools", "Read", "--allowedTools", "Read", "--no-session-persistence", *extra]  # fmt: skip
    p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    session = stack.proxy.exchanges[n:]
    report = f"rc={p.returncode}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}\n" + "\n".join(
        f"{e.method} {e.path} -> {e.status} {e.body[:300]!r}" for e in session
    )
    assert p.returncode == 0, report
    assert any(e.path == "/v1/messages" and e.method == "POST" for e in session), report
    refused = [e for e in session if e.status >= 400]
    assert not refused, report
    assert not stack.upstream.refused, stack.upstream.refused
    return p.stdout


def test_plain_text_answer(stack: Stack):
    out = claude(stack, "Say hello.")
    assert HELLO in out


def test_stream_json(stack: Stack):
    out = claude(stack, "Say hello.", "--output-format", "stream-json", "--verbose")
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    result = events[-1]
    assert result["type"] == "result" and result["subtype"] == "success" and not result["is_error"], result
    assert HELLO in result["result"]
    assert any(e["type"] == "assistant" for e in events)


def test_tool_round_trip(stack: Stack):
    before = len(stack.upstream.tool_results())
    out = claude(stack, "Read the file NOTES and tell me the secret word.")
    # the agent ran Read itself: the file's text reached the upstream as a tool result ...
    results = stack.upstream.tool_results()[before:]
    assert any("pineapple" in r for r in results), results
    # ... and the upstream's answer quoting it came back through thinkgate to the agent
    assert "The tool said:" in out and "pineapple" in out


def test_decision_records_name_what_was_accepted(stack: Stack):
    claude(stack, "Say hello.")
    lines = httpx.get(f"{stack.gateway}/dashboard/api/export.jsonl", timeout=10).text.splitlines()
    recs = [json.loads(x) for x in lines if x.strip()]
    mine = [r for r in recs if r["alias"].startswith("claude-")]
    assert mine, [r.get("alias") for r in recs]
    main = [r for r in mine if r.get("clamped")]
    assert main, mine[0]
    r = main[0]
    assert r["status"] == 200 and r["alias_pattern"] == "claude-*"
    # Claude Code asks for 128000; the default limit (32768) and then the model's (8192) clamp it
    assert r["clamped"].startswith("max_tokens 128000 -> 32768") and "-> 8192" in r["clamped"]
    dropped = " ".join(r["dropped"])
    assert "anthropic-beta" in dropped and "cache_control" in dropped
    assert any(x.startswith("context_management.clear_thinking") for x in r["dropped"]), r["dropped"]
