"""The Node `openai` package (installed by scripts/setup_client_envs.sh into
$THINKGATE_NODE_CLIENTS, default ~/.cache/thinkgate-node) through a real `thinkgate
serve` on strict upstreams: streamed reasoning turn + finalChatCompletion(), tool loop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.components import missing
from tests.e2e.clients.conftest import StrictGateway

pytestmark = pytest.mark.slow

NODE_DIR = Path(os.environ.get("THINKGATE_NODE_CLIENTS") or Path.home() / ".cache" / "thinkgate-node")
SCRIPT = Path(__file__).parent / "node" / "tool_loop.mjs"


def test_node_openai_final_chat_completion_and_tool_loop(strict_gateway: StrictGateway, tmp_path: Path):
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (Debian: nodejs npm)")
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        missing(f"the Node openai package is not in {NODE_DIR}: run scripts/setup_client_envs.sh")
    # ESM resolves packages from the script's folder up: run a copy placed beside node_modules
    script = NODE_DIR / f"tg_{os.getpid()}_{SCRIPT.name}"
    shutil.copy(SCRIPT, script)
    before = len(strict_gateway.rejected())
    try:
        out = subprocess.run([node, str(script), strict_gateway.base], capture_output=True, text=True, timeout=120)
    finally:
        script.unlink(missing_ok=True)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["role"] == "assistant" and seen["tool"] == "get_weather"
    assert "reasoning_content" in seen["sentBack"]  # the SDK sent the thinking back...
    assert "sunny, 21 C" in seen["answer"]  # ...and the strict upstream never saw it
    assert seen["plain"].strip()
    assert strict_gateway.rejected()[before:] == []
