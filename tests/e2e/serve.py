"""One way to run a real `thinkgate serve` process for a test: started in its own process
group, waited for until it answers `ready_path`, its log shown when it fails, and stopped
(SIGTERM, then SIGKILL) whatever the test did."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    log_dir: Path,
    config: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    ready_path: str = "/readyz",
    timeout: float = 240,
) -> Iterator[str]:
    """Yields the gateway's base URL (no /v1)."""
    port = free_port()
    log = log_dir / "serve.log"
    cmd = [sys.executable, "-m", "router.cli", "serve", "--port", str(port)]
    if config is not None:
        cmd += ["--config", str(config)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"thinkgate serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"thinkgate serve did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        # the whole group: serve's own children (llama.cpp servers) go with it
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # already gone
        pass
