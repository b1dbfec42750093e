"""Graceful shutdown and client disconnects, against a real `thinkgate serve`
process (real signals, real sockets) in front of the loopback fake upstream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from router.upstreams.fake_server import FakeOpenAIServer, Faults
from router.upstreams.llamacpp import free_port

ROOT = Path(__file__).resolve().parents[3]
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def config(tmp_path: Path, api_base: str, port: int, drain_s: float) -> Path:
    cfg = {
        "server": {"host": "127.0.0.1", "port": port, "drain_s": drain_s, "log_level": "warning"},
        "models": {
            "fast": {"provider": "openai", "model": "fake-model", "api_base": api_base, "logprobs": False},
            "reasoning": {"provider": "openai", "model": "fake-model", "api_base": api_base, "reasoning": True},
        },
        "routes": {"auto": {"fallback": False}},
        "classifier": {"enabled": False},
        "selfref": {"enabled": False},
        "cache": {"enabled": False},
    }
    path = tmp_path / "thinkgate.json"  # JSON is YAML
    path.write_text(json.dumps(cfg))
    return path


async def start(cfg: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"thinkgate exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            try:
                if (await c.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("thinkgate did not start")


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> float:
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    if proc.stderr:
        proc.stderr.close()


@pytest.mark.slow
async def test_sigterm_stops_accepting_and_drains_inflight_streams(tmp_path):
    async with FakeOpenAIServer(faults=Faults(chunk_delay_s=0.1), words=15) as up:  # a 1.5 s stream
        port = free_port()
        proc = await start(config(tmp_path, up.api_base, port, drain_s=10), port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
                async with c.stream("POST", "/v1/chat/completions", json=CHAT) as r:
                    lines = r.aiter_lines()
                    first = await anext(lines)
                    assert first.startswith("data: ")
                    t_term = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.sleep(0.3)
                    with pytest.raises(httpx.ConnectError):  # no longer accepting
                        await httpx.AsyncClient().get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    rest = [ln async for ln in lines]
            assert rest[-2:] == ["data: [DONE]", ""] or rest[-1] == "data: [DONE]"
            text = "".join(
                json.loads(ln[6:])["choices"][0]["delta"].get("content") or ""
                for ln in [first, *rest]
                if ln.startswith("data: {") and json.loads(ln[6:])["choices"]
            )
            assert text == " ".join(f"w{i}" for i in range(15))  # the whole answer, not a cut one
            waited = await wait_exit(proc, 10)
            assert proc.returncode in (0, -signal.SIGTERM), (
                proc.returncode
            )  # uvicorn re-raises the signal after draining
            assert time.monotonic() - t_term < 6 and waited < 6
        finally:
            stop(proc)


@pytest.mark.slow
@pytest.mark.parametrize("drain_s", [1, 0.5])  # a fractional deadline must not mean "wait forever"
async def test_sigterm_deadline_cuts_long_streams_and_cancels_upstream(tmp_path, drain_s):
    async with FakeOpenAIServer(faults=Faults(chunk_delay_s=0.5), words=60) as up:  # a 30 s stream
        port = free_port()
        proc = await start(config(tmp_path, up.api_base, port, drain_s=drain_s), port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
                async with c.stream("POST", "/v1/chat/completions", json=CHAT) as r:
                    lines = r.aiter_lines()
                    assert (await anext(lines)).startswith("data: ")
                    t_term = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    with pytest.raises(httpx.HTTPError):  # the stream is cut at the deadline
                        async for _ in lines:
                            pass
            waited = await wait_exit(proc, 10)
            assert proc.poll() is not None and time.monotonic() - t_term < 5, waited
            for _ in range(40):  # the upstream saw its stream closed, not left running
                if up.stats.aborted:
                    break
                await asyncio.sleep(0.1)
            assert up.stats.aborted == 1
        finally:
            stop(proc)


@pytest.mark.slow
async def test_client_disconnect_cancels_the_upstream_stream(tmp_path):
    async with FakeOpenAIServer(faults=Faults(chunk_delay_s=0.1), words=200) as up:  # a 20 s stream
        port = free_port()
        proc = await start(config(tmp_path, up.api_base, port, drain_s=5), port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
                async with c.stream("POST", "/v1/chat/completions", json=CHAT) as r:
                    lines = r.aiter_lines()
                    for _ in range(3):
                        await anext(lines)
                # leaving the block closes the connection mid-stream
            for _ in range(50):
                if up.stats.aborted:
                    break
                await asyncio.sleep(0.1)
            assert up.stats.aborted == 1 and up.stats.ok == 0
            proc.send_signal(signal.SIGTERM)
            await wait_exit(proc, 10)
            assert proc.returncode in (0, -signal.SIGTERM)
        finally:
            stop(proc)


def test_uvicorn_options_carry_the_drain_deadline():
    import uvicorn

    from router.access.shutdown import uvicorn_options
    from router.config import ServerSettings

    opts = uvicorn_options(ServerSettings(drain_s=0.5, port=9123))
    assert opts["timeout_graceful_shutdown"] == 0.5 and opts["access_log"] is False
    cfg = uvicorn.Config(app=lambda *a: None, **opts)
    assert cfg.timeout_graceful_shutdown == 0.5 and cfg.port == 9123
