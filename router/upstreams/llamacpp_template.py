"""A chat template from the config for a local llama.cpp model (`chat_template:`).

For a GGUF whose own template is missing or unfit, e.g. a base (pretrained) model that
answers well only when the question is continued after worked examples. llama-cpp-python's
server takes a Jinja template only inside a HuggingFace tokenizer_config.json
(`--chat_format hf-tokenizer-config`), so this writes one. Its formatter renders the
messages plus an empty assistant turn, tokenizes the text with special tokens and adds no
BOS of its own (the template writes `{{ bos_token }}`), and stops generation at the file's
`eos_token` or `bos_token`: the configured `stop` is written as `eos_token`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from router.config import ChatTemplate


def tokenizer_config(t: ChatTemplate) -> dict[str, str]:
    return {"chat_template": t.jinja, "bos_token": t.bos_token, "eos_token": t.stop}


def write_tokenizer_config(t: ChatTemplate) -> Path:
    """A tokenizer_config.json in a fresh temporary folder (the caller removes the folder)."""
    folder = Path(tempfile.mkdtemp(prefix="thinkgate-template-"))
    path = folder / "tokenizer_config.json"
    path.write_text(json.dumps(tokenizer_config(t)))
    return path
