"""The static encoder's own tokenizer (router/embedding/wordpiece.py) against the
reference: the model's Rust BERT tokenizer as model2vec calls it, and model2vec's
StaticModel.encode for the vectors. The shipped artifacts, the semantic cache's
stored vectors and the decision log were all made with model2vec's vectors, so
they must come out bit for bit: on every prompt of ../shared/data (where CI has it)
and on fuzz built from what a BERT normaliser treats specially (controls, accents,
CJK, punctuation of every script, non-ASCII spaces, over-long words, unknowns)."""

from __future__ import annotations

import importlib.util
import random

import numpy as np
import pytest

from tests.components import missing
from tests.policies.test_cheap_features_fast import real_prompts

CAP = 256


@pytest.fixture(scope="module")
def static():
    if not importlib.util.find_spec("model2vec"):
        missing("model2vec (pip install 'thinkgate[static]', in the test extra)")
    from router.embedding.static import StaticEncoder

    return StaticEncoder(max_tokens=CAP)


def reference_ids(static, text: str) -> list[int]:
    """model2vec's tokenize() after its own cut: characters first, then tokens."""
    m = static._model
    m._set_max_length_in_tokenizer(CAP)
    return m.tokenize([text[: CAP * m.median_token_length]])[0]


def reference_vectors(static, texts: list[str]) -> np.ndarray:
    v = np.asarray(static._model.encode(texts, max_length=CAP, use_multiprocessing=False), np.float32)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


PIECES = [
    "the", "The", "THE", "unaffable", "Tokenization", "tokenization", "xyzzyq", "qwertyuiopasdfgh", "3.14159", "1,000,000",
    "don't", "e-mail", "C++", "a_b", "__init__", "x=y+z", "(a)", "[b]", "{c}", "<d>", "#include", "```python", "$5", "50%",
    "café", "naïve", "Ångström", "résumé", "ÉCOLE", "straße", "İstanbul", "ǅemal", "ﬁne", "Ⅻ", "²", "٣", "½",
    "北京", "東京タワー", "한국어", "ไทย", "Привет", "γειά", "עברית", "مرحبا", "😀", "👍🏽", "🇫🇷", "\u200b", "\u00ad", "\ufeff",
    "“quoted”", "‘single’", "—", "–", "…", "«guillemets»", "¿qué?", "¡hola!", "•", "→", "∑", "√2", "π", "°C", "€", "£", "¥",
    "\u00a0", "\u2003", "\u3000", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x00", "\x1f", "\x7f", "\x85", "\ufffd",
    "a" * 101, "b" * 100, "ab" * 60 + "é", "[UNK]", "[CLS]", "##ing", "##", "e\u0301", "n\u0303o",
]


def fuzz_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(PIECES) for _ in range(rng.randint(0, 80))]
        out.append("".join(p + rng.choice(["", " ", "  ", "\n", ".", ",", "-", "\u00a0"]) for p in parts))
    return out


def test_the_same_ids_on_fuzz(static):
    for text in fuzz_texts(3000, seed=0):
        assert static.token_ids(text) == reference_ids(static, text), repr(text)


def test_the_same_ids_where_the_cap_falls_mid_word(static):
    # the 256th piece inside a long word, in an ASCII and a non-ASCII chunk
    for tail in ("unaffableness " * 40, "naïvetés " * 60, "x" * 3 + " tokenization" * 90):
        for lead in range(0, 12):
            text = "word " * lead + tail
            assert static.token_ids(text) == reference_ids(static, text), (lead, tail[:20])


def test_the_same_ids_and_vectors_on_every_real_prompt(static):
    prompts = real_prompts()
    if len(prompts) < 1000:
        pytest.skip(f"../shared/data is not beside the checkout ({len(prompts)} prompts found)")
    differ = [p[:80] for p in prompts if static.token_ids(p) != reference_ids(static, p)]
    assert not differ, f"{len(differ)} of {len(prompts)} prompts differ, e.g. {differ[:3]}"
    for i in range(0, len(prompts), 500):
        batch = prompts[i : i + 500]
        assert np.array_equal(static.encode(batch), reference_vectors(static, batch))


def test_the_same_vectors_on_fuzz_and_edge_cases(static):
    texts = fuzz_texts(500, seed=1) + ["", " ", "\x00\x01", "[UNK]", "😀😀", "a" * 5000]
    assert np.array_equal(static.encode(texts), reference_vectors(static, texts))
    assert not static.encode(["\x00"]).any()  # nothing to average: a zero vector, as model2vec gives


def test_words_are_looked_up_once(static):
    from router.embedding.wordpiece import WordPiece

    wp = WordPiece(static.path / "tokenizer.json")
    wp.ids("Tokenization tokenization unaffable", CAP)
    assert {"tokenization", "unaffable"} <= set(wp._memo)
    wp._memo["unaffable"] = (7,)  # a remembered word is not tokenised again
    assert wp.ids("unaffable", CAP) == [7]
