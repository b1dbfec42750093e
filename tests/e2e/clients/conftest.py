"""A real `thinkgate serve` whose upstreams are two strict OpenAI-compatible servers
(router/upstreams/strict_server.py, each its own process): `fast` answers plainly,
`reasoning` answers like a reasoning model (its thinking in `reasoning_content`).
Client SDKs then run multi-turn tool loops against the gateway with turn 1 forced
onto the reasoning route; any field a strict provider would reject fails the turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, _free_port

CONFIG = """
server: {{host: 127.0.0.1, port: {port}}}
models:
  fast: {{provider: openai, model: strict-fast, api_base: "{fast}", logprobs: false}}
  reasoning: {{provider: openai, model: strict-think, api_base: "{think}", reasoning: true}}
classifier: {{enabled: false}}
cache: {{semantic: false}}
"""


@dataclass
class StrictGateway:
    url: str  # the gateway root
    fast: str  # the strict servers' roots
    think: str

    @property
    def base(self) -> str:
        return f"{self.url}/v1"

    def log(self, which: str = "think") -> dict:
        return httpx.get(f"{getattr(self, which)}/_strict/log", timeout=5).json()

    def rejected(self) -> list[str]:
        return self.log("fast")["rejected"] + self.log("think")["rejected"]


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def strict_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StrictGateway]:
    tmp = tmp_path_factory.mktemp("strict")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp / f"{name}.log"
        with open(log, "wb") as out:
            p = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(p)
        return p, log

    try:
        roots = {}
        for name, extra in (("fast", ()), ("think", ("--reasoning", "reasoning_content"))):
            port = _free_port()
            p, log = start(name, "router.upstreams.strict_server", "--port", str(port), *extra)
            roots[name] = f"http://127.0.0.1:{port}"
            _wait(f"{roots[name]}/_strict/log", p, log)
        port = _free_port()
        cfg = tmp / "strict.yaml"
        cfg.write_text(CONFIG.format(port=port, fast=f"{roots['fast']}/v1", think=f"{roots['think']}/v1"))
        p, log = start("serve", "router.cli", "serve", "--config", str(cfg))
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/readyz", p, log, timeout=180)
        yield StrictGateway(url, roots["fast"], roots["think"])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
