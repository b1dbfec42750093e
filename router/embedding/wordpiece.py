"""The static encoder's tokenizer, in Python, for the decision's millisecond.

The Rust `tokenizers` call took 0.65-0.9 ms for a 256-token prompt on this
2-core machine, most of a decision's budget (bench/routing.py), because it
normalises, splits and looks up every character of the text before truncating.
This one stops at the token cap, and looks each word up once in a dict: a
word seen before costs one lookup, a new one a greedy longest-match.

It gives exactly the ids of the model's BERT tokenizer (BertNormalizer with
lowercasing and accent stripping, BertPreTokenizer, WordPiece "##"), as
model2vec asks for them (no special tokens, the first `max_tokens`).
ASCII words are tokenised here; a whitespace-delimited chunk holding any other
character goes to the Rust tokenizer whole, so Unicode normalisation,
categories and CJK handling stay the reference's own.
tests/router/embedding/test_wordpiece.py compares the two on every prompt
of ../shared/data and on fuzz."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from itertools import chain, islice
from pathlib import Path
from typing import Any

# BertNormalizer's clean_text drops control characters (all of ASCII's but tab,
# newline and carriage return: \x0b and \x0c are controls first, never spaces).
_CONTROLS = {c: None for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]}
_HAS_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_SPACE = re.compile(r"[ \t\n\r]")
_MAX_CHUNK_CALLS = 8  # one Rust call costs ~10 us; past this many the rest goes in larger pieces
_PIECE_CHARS = 256
# BertPreTokenizer splits off every punctuation character (ASCII's all count,
# underscore included) and splits on whitespace; the rest are letters and digits.
_WORD = re.compile(r"[A-Za-z0-9]+|[" + re.escape(string.punctuation) + "]")
_MEMO_MAX = 200_000  # distinct words remembered (a dict of tuples: ~40 MB at the cap)


class WordPiece:
    """`ids(text)`: the token ids of the first `max_tokens` word pieces of text."""

    def __init__(self, tokenizer_json: str | Path, max_chars_per_word: int | None = None) -> None:
        from tokenizers import Tokenizer

        spec = json.loads(Path(tokenizer_json).read_text())
        norm, pre, model = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec["model"]
        expected = (norm.get("type"), norm.get("lowercase"), norm.get("clean_text"), norm.get("strip_accents"), pre.get("type"), model["type"])
        if expected != ("BertNormalizer", True, True, None, "BertPreTokenizer", "WordPiece"):
            raise ValueError(f"{tokenizer_json}: not an uncased BERT WordPiece tokenizer {expected}")
        self.vocab: dict[str, int] = model["vocab"]
        self.prefix: str = model.get("continuing_subword_prefix", "##")
        self.unk: int = self.vocab[model["unk_token"]]
        self.max_chars = max_chars_per_word or int(model.get("max_input_chars_per_word", 100))
        # the reference tokenizer, for chunks with non-ASCII characters; its own copy, never
        # truncating, so that nobody else's settings can cut a chunk short
        self.rust: Any = Tokenizer.from_file(str(tokenizer_json))
        self.rust.no_truncation()
        self.rust.no_padding()
        # tokens the Rust tokenizer finds in the raw text before anything else ([UNK], [PAD]):
        # a text holding one (rare: pasted tokenizer output) goes to it whole
        self.added = [t["content"] for t in spec.get("added_tokens") or []]
        self._memo = _Memo(self._pieces)

    def word(self, w: str) -> tuple[int, ...]:
        """One lower-case ASCII word (letters and digits, or one punctuation mark)."""
        return self._memo[w]

    def _pieces(self, w: str) -> tuple[int, ...]:
        if len(w) > self.max_chars:
            return (self.unk,)
        whole = self.vocab.get(w)
        if whole is not None:
            return (whole,)
        out: list[int] = []
        start = 0
        while start < len(w):
            end = len(w)
            while end > start:
                piece = w[start:end] if start == 0 else self.prefix + w[start:end]
                i = self.vocab.get(piece)
                if i is not None:
                    out.append(i)
                    break
                end -= 1
            else:
                return (self.unk,)  # no piece fits: the whole word is unknown
            start = end
        return tuple(out)

    def ids(self, text: str, max_tokens: int) -> list[int]:
        raw = text
        if _HAS_CONTROL.search(text):
            text = text.translate(_CONTROLS)
        if any(a in text or a in raw for a in self.added):
            return self.rust.encode(raw, add_special_tokens=False).ids[:max_tokens]
        if text.isascii():  # the common case: one pass over the whole text
            return self._ascii(_WORD.findall(text.lower()), max_tokens)
        return self._mixed(text, max_tokens)

    def _mixed(self, text: str, max_tokens: int) -> list[int]:
        """Text with some non-ASCII: the whitespace-delimited chunks holding it go to the
        Rust tokenizer one by one, the ASCII runs between them are tokenised here."""
        out: list[int] = []
        pos = 0
        calls = 0
        for m in _NON_ASCII.finditer(text):
            if m.start() < pos:
                continue  # inside the chunk just tokenised
            start = max(pos - 1, text.rfind(" ", pos, m.start()), text.rfind("\n", pos, m.start()),
                        text.rfind("\t", pos, m.start()), text.rfind("\r", pos, m.start())) + 1
            end = _SPACE.search(text, m.end())
            stop = end.start() if end else len(text)
            if start > pos:
                out += self._ascii(_WORD.findall(text[pos:start].lower()), max_tokens - len(out))
                if len(out) >= max_tokens:
                    return out[:max_tokens]
            calls += 1
            if calls > _MAX_CHUNK_CALLS:  # mostly non-ASCII (Cyrillic, CJK...): the rest by the Rust tokenizer
                return self._rust_until(text, start, out, max_tokens)
            out += self.rust.encode(text[start:stop], add_special_tokens=False).ids
            if len(out) >= max_tokens:
                return out[:max_tokens]
            pos = stop
        if pos < len(text):
            out += self._ascii(_WORD.findall(text[pos:].lower()), max_tokens - len(out))
        return out[:max_tokens]

    def _rust_until(self, text: str, start: int, out: list[int], max_tokens: int) -> list[int]:
        """The Rust tokenizer on text[start:], a piece of ~_PIECE_CHARS at a time, each cut
        at whitespace (where BERT splits anyway), until the cap is reached: it does not
        tokenise the rest of a long text only to truncate it."""
        while start < len(text) and len(out) < max_tokens:
            cut = _SPACE.search(text, start + _PIECE_CHARS)
            stop = cut.start() if cut else len(text)
            out += self.rust.encode(text[start:stop], add_special_tokens=False).ids
            start = stop
        return out[:max_tokens]

    def _ascii(self, words: list[str], room: int) -> list[int]:
        # map, chain and islice run in C: a remembered word costs a dict lookup, and the
        # words past the cap are never looked at
        return list(islice(chain.from_iterable(map(self._memo.__getitem__, words)), room))


class _Memo(dict[str, tuple[int, ...]]):
    """word -> its pieces, computed on first sight."""

    def __init__(self, pieces: Callable[[str], tuple[int, ...]]) -> None:
        super().__init__()
        self.pieces = pieces

    def __missing__(self, w: str) -> tuple[int, ...]:
        if len(self) >= _MEMO_MAX:
            self.clear()  # a bound, not an LRU: new vocabulary is rare once warm
        out = self[w] = self.pieces(w)
        return out
