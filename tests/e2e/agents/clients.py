"""Where scripts/setup_agent_clients.sh put the agent clients, and how a test runs one:
in a temp working directory with a temp HOME, its telemetry and update checks off."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.components import missing

CLIENTS = Path(os.environ.get("THINKGATE_AGENT_CLIENTS") or Path.home() / ".cache" / "thinkgate-agents" / "clients")
BIN = CLIENTS / "node_modules" / ".bin"


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        missing(f"{name} is not in {BIN}: run scripts/setup_agent_clients.sh")
    return path


def run(
    cmd: list[str], cwd: Path, home: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    base = {
        "HOME": str(home),
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",  # node 22 first: the npm launchers use `node`
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }
    return subprocess.run(
        cmd,
        check=False,
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
