"""cheap_features counts whole-word patterns from the text's words instead of one regex
scan per pattern, and splits the code and reasoning patterns into parts counted from
words and literals (policies/features.py). The shipped artifacts were trained on the
regex counts, so the fast path must give exactly those: checked here against the plain
regex features (`reference`, the code before the fast path) on every prompt of
../shared/data (where CI has it) and on fuzzed text built from the patterns' own words,
odd case, Unicode letters and digits, code and punctuation."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest

import math

from policies import features as F
from policies.features import _STRUCTURE_RE, _WORD, _structure_counts

DATA = Path(os.environ.get("THINKGATE_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")


def regex_counts(text: str) -> list[int]:
    return [len(r.findall(text)) for r in _STRUCTURE_RE.values()]


def reference(messages: list[dict]) -> list[float]:
    """cheap_features as plain regex scans (policies/features.py before the fast path)."""
    last = F._last_user_index(messages) if messages else None
    full = F.message_text(messages[last].get("content")) if last is not None else ""
    context = sum(len(F.message_text(m.get("content"))) for i, m in enumerate(messages) if i != last)
    chars = len(full)
    text = full[: F.FEATURE_CHARS]
    scale = chars / len(text) if text else 1.0
    numbers = F._NUMBER.findall(text)
    return [
        math.log1p(chars),
        math.log1p(len(F._WORD.findall(text)) * scale),
        math.log1p(len(F._SENTENCE.findall(text)) * scale),
        math.log1p(len(numbers) * scale),
        sum(map(str.isdigit, text)) / len(text) if text else 0.0,
        100.0 * len(F._MATH.findall(text)) * scale / (chars + 100.0),
        math.log1p(len(F._CODE.findall(text)) * scale),
        min(len(F._CHOICE.findall(text)) * scale, 10) / 4.0,
        math.log1p(len(F._REASONING_WORDS.findall(text)) * scale),
        math.log1p(text.count("?") * scale),
        math.log1p(sum(1 for m in messages if m.get("role") in ("user", "assistant"))),
        1.0 if any(m.get("role") in ("system", "developer") for m in messages) else 0.0,
        math.log1p(context),
        math.log1p(len(set(numbers)) * scale),
        math.log1p(max((len(n) for n in numbers), default=0)),
        *(math.log1p(n * scale) for n in regex_counts(text)),
    ]


def real_prompts() -> list[str]:
    out: list[str] = []
    for name, key in (("math/gsm8k.jsonl", "problem"), ("math/math.jsonl", "problem"), ("math/aime.jsonl", "problem"),
                      ("math/amc.jsonl", "problem"), ("prompts/arena-hard-v2.jsonl", "prompt")):
        if (DATA / name).exists():
            out += [str(json.loads(line).get(key, "")) for line in (DATA / name).open() if line.strip()]
    if (DATA / "prompts/mt-bench.jsonl").exists():
        out += [t for line in (DATA / "prompts/mt-bench.jsonl").open() if line.strip() for t in json.loads(line)["turns"]]
    for f in sorted((DATA / "routellm" / "mmlu").glob("*.csv"))[:20]:
        with f.open(newline="") as fh:
            out += [row["prompt"] for row in csv.DictReader(fh)]
    return out


def test_the_same_counts_on_every_real_prompt() -> None:
    prompts = real_prompts()
    if len(prompts) < 1000:
        pytest.skip(f"../shared/data is not beside the checkout ({len(prompts)} prompts found)")
    differ = [p[:80] for p in prompts if _structure_counts(p, _WORD.findall(p)) != regex_counts(p)]
    assert not differ, f"{len(differ)} of {len(prompts)} prompts differ, e.g. {differ[:3]}"
    convs = [[{"role": "user", "content": p}] for p in prompts]
    convs += [[{"role": "system", "content": a}, {"role": "user", "content": b}] for a, b in zip(prompts, prompts[1:200])]
    differ = [c[-1]["content"][:80] for c in convs if F.cheap_features(c) != reference(c)]
    assert not differ, f"{len(differ)} of {len(convs)} conversations differ, e.g. {differ[:3]}"


def test_the_same_counts_on_fuzzed_text() -> None:
    rng = random.Random(0)
    vocab = ["hours", "Hour", "HOURS", "per", "each", "more", "than", "twice", "half", "dollars", "cents", "$", "kg", "KM",
             "inches", "Inch", "and", "AND", "if", "then", "first", "Next", "3/4", "12", "1.5", "%", "percent", "percentage",
             "Tom", "Mary", "hours_2", "2hours", "and-then", "ſeconds", "Kg", "café", "naïve", "one", "Twenty", "dozen",
             "x", "?", ".", "!", ",", "\n", "  ", "_", "hourly", "perhaps", "remaining", "left", "lefty"]
    for _ in range(3000):
        text = "".join(rng.choice(vocab) + rng.choice([" ", "", ". ", "\n", "-"]) for _ in range(rng.randint(0, 40)))
        assert _structure_counts(text, _WORD.findall(text)) == regex_counts(text), text


def test_the_same_features_on_fuzzed_code_and_prose() -> None:
    rng = random.Random(1)
    vocab = ["def ", "def", "Def ", "undef ", "class ", "classes", "import ", "imports", "return", "Return", "returns",
             "function", "functions", "```", "````", "#include", "=>", "==>", "{", "}", ";", ";\n", "{ \n", "}\t\n",
             "how many", "How  many", "HOW MUCH", "step by step", "step by step by step", "explain why", "explain",
             "prove", "Proof", "optimise", "optimize", "optimizer", "percent", "percentage", "%", "Total", "remaining",
             "3.14", "1,000", "2/3", "x", "?", ".", "\n", "  ", "_", "ſolve", "café", "²", "٣", "$5", "\\frac",
             "Tom", "Mary", "McDonald", "ABC", "Abc1", "Éva", "Ⓐ", "ⒶHow many", "«How", "1.", ".5", "٣.٤", "!\tAnn",
             "\u212am", "\u212aM", "ıf", "İf", "İstanbul", "ſeconds", "Привет", "北京", "percenté", "Hów many", "½", "①"]
    for _ in range(4000):
        text = "".join(rng.choice(vocab) + rng.choice([" ", "", ". ", "\n", "-", "(", "! ", "?\n"]) for _ in range(rng.randint(0, 40)))
        msgs = [{"role": "user", "content": text}]
        assert F.cheap_features(msgs) == reference(msgs), text


def test_the_letters_that_fold_into_ascii_are_all_known() -> None:
    """cheap_features counts words in Python only when no word holds a character that
    re.I matches to an ASCII letter or that lower() turns into ASCII: that set, over all
    of Unicode, is exactly the one policies/features.py knows."""
    import re
    import string
    import sys

    letters = [re.compile(a, re.I) for a in string.ascii_lowercase]
    found = set()
    for cp in range(0x80, sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        low = c.lower()
        if low == c and not c.isalpha():
            continue  # no case, no letter: nothing to fold
        if any(ch.isascii() for ch in low) or c.isalnum() != all(ch.isalnum() for ch in low) or any(p.fullmatch(c) for p in letters):
            found.add(c)
    assert found == set("\u0130\u0131\u017f\u212a")
    assert all(F._FOLDS_TO_ASCII.search(c) for c in found)


def lexical_reference(messages: list[dict]) -> list[int]:
    """lexical_indices as it was before its ASCII bytes path: str grams, encode + crc32."""
    import zlib

    text = F.conversation_text(messages)[: F._LEX_CHARS].lower() if messages else ""
    tokens = F._TOKEN.findall(text)
    grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
    return sorted({zlib.crc32(g.encode()) % F.LEXICAL_DIM for g in grams})


def test_lexical_buckets_are_the_str_ones_on_real_and_fuzzed_text() -> None:
    import re

    # the bytes path's premise, over all of ASCII: \w agrees, \s only at the separators it guards
    str_space = {c for c in range(128) if re.fullmatch(r"\s", chr(c))}
    bytes_space = {c for c in range(128) if re.fullmatch(rb"\s", bytes([c]))}
    assert str_space - bytes_space == {0x1C, 0x1D, 0x1E, 0x1F} and bytes_space <= str_space
    assert all(bool(re.fullmatch(r"\w", chr(c))) == bool(re.fullmatch(rb"\w", bytes([c]))) for c in range(128))
    assert all(F._STR_ONLY_SPACE.search(chr(c)) for c in str_space - bytes_space)
    prompts = real_prompts() or ["What is 2 + 2?", "Prove that √2 is irrational.", "Привет, 北京 $5"]
    rng = random.Random(2)
    alphabet = ["a", "B", " ", "é", "1", "=", "\n", "_", "ſ", "İ", "K", "北", "\x1c", "\x1d", "\x1e", "\x1f", "\x0b",
                "\x0c", "\t", "\x00", "\x7f", "-", "'", "$"]
    prompts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(3000)]
    for p in prompts:
        msgs = [{"role": "user", "content": p}]
        assert F.lexical_indices(msgs) == lexical_reference(msgs), repr(p[:80])
