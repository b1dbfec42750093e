"""The llama.cpp server command line LlamaServer builds (no model is started)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from router.upstreams import llamacpp, llamacpp_template


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


def test_a_chat_template_of_the_config_goes_in_a_tokenizer_config(monkeypatch):
    import json

    from router.config import ChatTemplate

    t = ChatTemplate(jinja="{{ bos_token }}{{ messages[0].content }} =", bos_token="<bos>", stop="\n")

    def popen(cmd, **_):
        raise _Started(cmd)

    monkeypatch.setattr(llamacpp.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(subprocess, "Popen", popen)
    server = llamacpp.LlamaServer(Path("m.gguf"), port=1, chat_format="gemma", chat_template=t)
    seen: dict = {}
    real_write = llamacpp_template.write_tokenizer_config

    def write(tt):
        path = real_write(tt)
        seen["path"], seen["config"] = path, json.loads(path.read_text())
        return path

    monkeypatch.setattr(llamacpp_template, "write_tokenizer_config", write)
    with pytest.raises(_Started) as e:
        server.start(timeout=1)
    cmd = e.value.args[0]
    # the template wins over chat_format, through llama-cpp-python's HF tokenizer_config loader
    assert cmd[cmd.index("--chat_format") + 1] == "hf-tokenizer-config" and cmd.count("--chat_format") == 1
    assert cmd[cmd.index("--hf_tokenizer_config_path") + 1] == str(seen["path"])
    assert seen["config"] == {"chat_template": t.jinja, "bos_token": "<bos>", "eos_token": "\n"}
    assert not seen["path"].exists()  # a server that failed to start leaves no file behind
