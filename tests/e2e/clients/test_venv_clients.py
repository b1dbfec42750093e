"""Client SDKs whose pins conflict with .venv (pydantic-ai needs openai>=3, instructor
pins older jiter/rich), each in a venv made by scripts/setup_client_envs.sh, run
against a real `thinkgate serve` on strict upstreams."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.components import missing
from tests.e2e.clients.conftest import StrictGateway

pytestmark = pytest.mark.slow

VENVS = Path(os.environ.get("THINKGATE_CLIENT_VENVS") or Path.home() / ".cache" / "thinkgate-venvs")
SCRIPTS = Path(__file__).parent / "scripts"


def _run(venv: str, script: str, gw: StrictGateway) -> dict:
    py = VENVS / venv / "bin" / "python"
    if not (VENVS / venv / ".thinkgate-client").is_file():
        missing(f"no {venv} client venv at {VENVS / venv}: run scripts/setup_client_envs.sh")
    out = subprocess.run([str(py), str(SCRIPTS / script), gw.base], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pydantic_ai_agent_tool_loop(strict_gateway: StrictGateway):
    before = len(strict_gateway.rejected())
    seen = _run("pydantic-ai", "pydantic_ai_loop.py", strict_gateway)
    assert seen["tool_calls"] == ["x"] and "sunny, 21 C" in seen["output"] and seen["requests"] == 2
    assert strict_gateway.rejected()[before:] == []


def test_instructor_structured_output_then_follow_up(strict_gateway: StrictGateway):
    before = len(strict_gateway.rejected())
    seen = _run("instructor", "instructor_structured.py", strict_gateway)
    assert seen["city"] == "x" and seen["reasoning_back"] and "ok" in seen["follow"]
    assert strict_gateway.rejected()[before:] == []
