"""Google Gemini API clients through a real `thinkgate serve` on strict scripted
upstreams (gemini_gateway.py): Gemini CLI (`gemini -p`), the `google-genai` Python SDK
and the AI SDK's `@ai-sdk/google`, each installed by scripts/setup_gemini_clients.sh
under ~/.cache/thinkgate-gemini. A check passes only when the tool really ran, its
output reached the upstream through thinkgate, and no request of the client got a
4xx/5xx (a client that retries without a feature must not pass)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.components import missing
from tests.e2e.agents.gemini_gateway import GeminiGateway, gemini_gateway, write_secret  # noqa: F401

pytestmark = pytest.mark.slow

CLIENTS = Path(os.environ.get("THINKGATE_GEMINI_CLIENTS") or Path.home() / ".cache" / "thinkgate-gemini")
NODE_DIR = CLIENTS / "node"
NODE = NODE_DIR / "node_modules" / ".bin" / "node"  # the npm `node` package: node 22
GEMINI = NODE_DIR / "node_modules" / "@google" / "gemini-cli" / "bundle" / "gemini.js"
SDK_PY = CLIENTS / "venv" / "bin" / "python"
HERE = Path(__file__).parent / "gemini_clients"
SETUP = "run scripts/setup_gemini_clients.sh"


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose only Google settings are these: no proxies,
    no other Google credentials, this temp dir as HOME."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM", "SYSTEMROOT")}
    return {**keep, "HOME": str(home), "NO_COLOR": "1", **extra}


def _check_session(gw: GeminiGateway, before: int) -> None:
    session = gw.requests[before:]
    assert session, "the client made no request through thinkgate"
    assert [r for r in session if r.status >= 400] == [], session
    assert gw.rejected_upstream() == []


# -- Gemini CLI -------------------------------------------------------------------


def _gemini_settings(home: Path, tools: list[str]) -> None:
    """Gemini CLI's documented settings (docs/reference/configuration.md): the API-key
    auth, no usage statistics, no telemetry, no update checks, no folder-trust prompt,
    and only the built-in tools named."""
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "tools": {"core": tools},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=2))


def _gemini(gw: GeminiGateway, tmp: Path, prompt: str, tools: list[str]) -> dict:
    if not (NODE.exists() and GEMINI.exists()):
        missing(f"Gemini CLI / node 22 are not in {NODE_DIR}: {SETUP}")
    _gemini_settings(tmp, tools)
    env = _clean_env(tmp, GEMINI_API_KEY=gw.key, GOOGLE_GEMINI_BASE_URL=gw.url)
    cmd = [str(NODE), str(GEMINI), "-p", prompt, "-m", "gemini-2.5-flash", "--output-format", "json"]
    out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
                         check=False)
    assert out.returncode == 0, f"gemini exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(out.stdout[out.stdout.index("{") :])


def test_gemini_cli_text(gemini_gateway: GeminiGateway, tmp_path: Path):  # noqa: F811
    before, seen = len(gemini_gateway.requests), len(gemini_gateway.fast.accepted)
    gemini_gateway.script(None)
    # no built-in tools (tools.core: []): the request offers none, so the scripted model answers text
    result = _gemini(gemini_gateway, tmp_path, "Say hello.", tools=[])
    assert result["response"].split() == [f"w{i}" for i in range(6)], result  # the strict server's six words
    sent = gemini_gateway.fast.accepted[seen:]
    assert sent and all("tools" not in b for b in sent)
    assert any("Say hello." in json.dumps(m.get("content")) for b in sent for m in b["messages"] if m["role"] == "user")
    _check_session(gemini_gateway, before)
    assert any("/v1beta/models/gemini-2.5-flash:" in r.path for r in gemini_gateway.requests[before:])


def test_gemini_cli_read_file_round_trip(gemini_gateway: GeminiGateway, tmp_path: Path):  # noqa: F811
    secret = write_secret(tmp_path, "the-cli-secret-is-quokka-4417")
    before = len(gemini_gateway.requests)
    gemini_gateway.script("read_file", file_path=str(secret), absolute_path=str(secret))
    result = _gemini(gemini_gateway, tmp_path, "What does notes.txt say?", tools=["read_file"])
    assert "quokka-4417" in result["response"], result
    assert gemini_gateway.fast.saw("quokka-4417")  # the tool's output went upstream through thinkgate
    _check_session(gemini_gateway, before)


# -- google-genai (Python) -----------------------------------------------------------


def test_google_genai_sdk(gemini_gateway: GeminiGateway, tmp_path: Path):  # noqa: F811
    if not SDK_PY.exists():
        missing(f"the google-genai venv is not in {CLIENTS / 'venv'}: {SETUP}")
    secret = write_secret(tmp_path, "the-sdk-secret-is-axolotl-9921")
    before = len(gemini_gateway.requests)
    gemini_gateway.script("read_file", path=str(secret))
    out = subprocess.run(
        [str(SDK_PY), str(HERE / "genai_sdk.py"), gemini_gateway.url, gemini_gateway.key, "gemini-2.5-flash", "thinker"],
        cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["text"] and seen["stream"] and seen["total_tokens"] > 0 and seen["count"] > 0
    assert seen["thoughts"] and seen["thoughts"][0].startswith("Let me think") and seen["answer_after_thinking"]
    assert seen["ran"] == [str(secret), str(secret)]  # by hand, then by the SDK's automatic function calling
    assert seen["manual"]["tool"] == "read_file" and "axolotl-9921" in seen["manual"]["answer"]
    assert "axolotl-9921" in seen["automatic"]
    assert gemini_gateway.fast.saw("axolotl-9921")
    _check_session(gemini_gateway, before)
    paths = {r.path for r in gemini_gateway.requests[before:]}
    assert {p.rsplit(":", 1)[-1] for p in paths} >= {"generateContent", "streamGenerateContent", "countTokens"}
    # the SDK's safety settings were accepted, left out upstream and said so
    assert [r.dropped for r in gemini_gateway.requests[before:] if r.dropped] == ["safetySettings"]


# -- @ai-sdk/google ----------------------------------------------------------------


def test_ai_sdk_google_generate_and_stream_text_with_a_tool(gemini_gateway: GeminiGateway, tmp_path: Path):  # noqa: F811
    if not (NODE.exists() and (NODE_DIR / "node_modules" / "@ai-sdk" / "google").is_dir()):
        missing(f"node 22 / ai / @ai-sdk/google are not in {NODE_DIR}: {SETUP}")
    secret = write_secret(tmp_path, "the-ai-sdk-secret-is-pangolin-3307")
    # ESM resolves packages from the script's folder up: run a copy placed beside node_modules
    script = NODE_DIR / f"tg_{os.getpid()}_ai_sdk_google.mjs"
    shutil.copy(HERE / "ai_sdk_google.mjs", script)
    before = len(gemini_gateway.requests)
    gemini_gateway.script("read_file", path=str(secret))
    try:
        out = subprocess.run(
            [str(NODE), str(script), gemini_gateway.url, gemini_gateway.key, "gemini-2.5-flash"],
            cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    finally:
        script.unlink(missing_ok=True)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["ran"] == [str(secret), str(secret)]
    assert "pangolin-3307" in seen["text"] and seen["steps"] == 2
    assert "pangolin-3307" in seen["streamed"] and seen["plain"]
    assert gemini_gateway.fast.saw("pangolin-3307")
    _check_session(gemini_gateway, before)
