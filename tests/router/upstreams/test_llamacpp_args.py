"""The llama.cpp server command line LlamaServer builds (no model is started)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from router.upstreams import llamacpp


class _Started(Exception):
    pass


def command(monkeypatch, **kw) -> list[str]:
    seen: list[list[str]] = []

    def popen(cmd, **_):
        seen.append(cmd)
        raise _Started

    monkeypatch.setattr(llamacpp.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(_Started):
        llamacpp.LlamaServer(Path("m.gguf"), port=1, **kw).start(timeout=1)
    return seen[0]


def test_streams_are_not_cut_short_by_a_waiting_request(monkeypatch):
    cmd = command(monkeypatch)
    assert cmd[cmd.index("--interrupt_requests") + 1] == "false"
    assert "--chat_format" not in cmd  # the GGUF's own template


def test_a_chat_format_for_a_gguf_without_a_template(monkeypatch):
    cmd = command(monkeypatch, chat_format="gemma")
    assert cmd[cmd.index("--chat_format") + 1] == "gemma"
