"""What the difficulty router sees of a conversation: one text for the embedder,
a few cheap numeric features and a hashed bag of word n-grams. Training
(calibrate/) and serving (router/embedding/batcher.py, policies/difficulty.py) both
call these functions, so the classifier always meets the same representation
it was trained on.

Pure Python, no heavy imports."""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from typing import Any

# Bump when conversation_text() or cheap_features() change: artifacts record
# it and refuse to load under a different version.
FEATURE_VERSION = "conv-v1+cheap-v2"

# Bump when lexical_indices() changes (artifacts with lexical weights record it).
LEXICAL_VERSION = "lex-v1"
LEXICAL_DIM = 1 << 18

# Roughly the embedder's window (256 word pieces ~ 1000 characters of English).
# Context beyond it would be truncated by the tokenizer anyway.
_CONTEXT_CHARS = 1200
_HEAD_CHARS = 8000
# What cheap_features' regular expressions read (see there): ~0.45 ms per 1,000 characters
# on this 2-core machine, so 4,096 keeps a decision's p99 within its 5 ms (bench/routing.py).
# 15,356 of the 15,361 prompts the shipped artifacts were trained on are shorter.
FEATURE_CHARS = 4096


def message_text(content: Any) -> str:
    """The text of an OpenAI message `content`: a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


def as_messages(prompt: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An outcome-file prompt (a string or a message list) as chat messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


def _last_user_index(messages: list[dict[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def conversation_text(messages: list[dict[str, Any]]) -> str:
    """The text the embedder sees.

    The last user turn comes first, verbatim: it is what the next answer must
    solve, and the encoder truncates at 256 word pieces from the end, so
    putting it first guarantees it is always fully seen. The rest of the
    conversation follows as context, most recent turn first, each line tagged
    with its role, e.g.

        <last user turn>
        [assistant] <previous answer>
        [user] <previous question>
        [system] <system prompt>

    A single user message maps to exactly its text, so prompts from outcome
    files (plain strings) and one-turn chat requests embed identically.
    """
    if not messages:
        return ""
    last = _last_user_index(messages)
    if last is None:
        last = len(messages) - 1
    # The encoder keeps 256 word pieces; capping the characters first only
    # bounds tokenisation time for huge prompts (the embedding is the same).
    head = message_text(messages[last].get("content")).strip()[:_HEAD_CHARS]
    context: list[str] = []
    budget = _CONTEXT_CHARS
    for i in range(len(messages) - 1, -1, -1):
        if i == last or budget <= 0:
            continue
        text = message_text(messages[i].get("content")).strip()
        if not text:
            continue
        text = text[:budget]
        budget -= len(text)
        context.append(f"[{messages[i].get('role', 'user')}] {text}")
    return "\n".join([head, *context]) if context else head


_MATH = re.compile(r"[=+\-*/^<>%√∑∫π]|\\(?:frac|sqrt|sum|int|cdot|times|le|ge)|\$")
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|\bimport |[{};]\s*$|#include|\bfunction\b|=>", re.M)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CHOICE = re.compile(r"^\s*\(?[A-Da-d][.)]\s", re.M)
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_REASONING_WORDS = re.compile(
    r"\b(prove|proof|derive|calculate|compute|solve|how many|how much|probability|optimi[sz]e|"
    r"step by step|explain why|algorithm|complexity|integral|equation|percent|total|remaining)\b",
    re.I,
)

# Markers of quantitative structure (cheap-v2): how many quantities a problem
# juggles and how they relate. Multi-step word problems are where a fast model
# slips, and a sentence embedding mostly sees their story, not their structure.
# Each is counted on the last user turn and enters as log1p(count).
_STRUCTURE = {
    "percents": r"%|\bpercent",
    "fractions": r"\b(?:half|halves|third|quarter|fourth|fifth|twice|double|triple|thrice)\b|\d+/\d+",
    "decimals": r"\d+\.\d+",
    "money": r"\$|\b(?:dollars?|cents?)\b",
    "time_units": r"\b(?:hours?|minutes?|seconds?|days?|weeks?|months?|years?)\b",
    "rates": r"\b(?:each|per|every|times|rate)\b",
    "comparisons": r"\b(?:more|less|fewer|than|remaining|left|rest)\b",
    "number_words": r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|thousand|dozen)\b",
    "units": r"\b(?:feet|foot|inch(?:es)?|miles?|yards?|pounds?|ounces?|kg|kilograms?|grams?|liters?|litres?|gallons?|"
    r"meters?|cm|km|mph)\b",
    "conditions": r"\b(?:if|then|after|before|until|while|when|instead|only)\b",
    "ordinals": r"\b(?:first|second|third|fourth|fifth|last|next|later|another)\b",
    # capitalised words not opening a sentence: the named actors of a problem
    "names": r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+\b",
    "conjunctions": r"\band\b",
}
_STRUCTURE_RE = {k: re.compile(v, re.I if k != "names" else 0) for k, v in _STRUCTURE.items()}

# The same counts, faster (the decision's budget is a millisecond: bench/routing.py): a
# pattern that is a list of whole words counts the text's words (_WORD, already split for
# log_words) found in that list, instead of scanning the text once more per pattern. A whole
# word between \b...\b is exactly a \w+ run, so the counts are the patterns' own
# (tests/policies/test_cheap_features_fast.py checks every prompt of ../shared/data and fuzz).
# Patterns with other parts keep those as regular expressions, added to the word count:
# their matches cannot overlap a word's.
def _words(*stems: str) -> frozenset[str]:
    out: set[str] = set()
    for s in stems:
        out.update(s.split())
    return frozenset(out)


_STRUCTURE_WORDS: dict[str, tuple[frozenset[str], re.Pattern[str] | None, str | None]] = {
    # name: (the words, a regex for the rest, a literal for the rest)
    "fractions": (_words("half halves third quarter fourth fifth twice double triple thrice"), re.compile(r"\d+/\d+"), None),
    "money": (_words("dollar dollars cent cents"), None, "$"),
    "time_units": (_words("hour hours minute minutes second seconds day days week weeks month months year years"), None, None),
    "rates": (_words("each per every times rate"), None, None),
    "comparisons": (_words("more less fewer than remaining left rest"), None, None),
    "number_words": (_words("one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
                            "hundred thousand dozen"), None, None),
    "units": (_words("feet foot inch inches mile miles yard yards pound pounds ounce ounces kg kilogram kilograms gram grams "
                     "liter liters litre litres gallon gallons meter meters cm km mph"), None, None),
    "conditions": (_words("if then after before until while when instead only"), None, None),
    "ordinals": (_words("first second third fourth fifth last next later another"), None, None),
    "conjunctions": (_words("and"), None, None),
}


def _lower_counts(words: list[str]) -> dict[str, int] | None:
    """The words' counts, lower-cased; None when a word holds a letter that re.I folds
    into ASCII (ſ, K...): such texts go to the regexes."""
    joined = " ".join(words)  # one lower() and split() in C: words hold no spaces
    if not joined.isascii() and _FOLDS_TO_ASCII.search(joined):
        return None
    return Counter(joined.lower().split(" ")) if words else {}


# The only non-ASCII characters that re.I matches to an ASCII letter, or that lower() turns
# into one (İ ı ſ K): any other non-ASCII word can never be one of the patterns' ASCII words,
# so it is counted (and never matched) with the rest. tests/policies/test_cheap_features_fast.py
# recomputes the set over all of Unicode.
_FOLDS_TO_ASCII = re.compile("[\u0130\u0131\u017f\u212a]")


def _list_counts(lower: dict[str, int]) -> dict[str, int]:
    """How many of the text's words each word list (by name, see _WORD_LISTS) holds: one
    set intersection in C, then a loop over the few words that are in some list."""
    hits: dict[str, int] = {}
    for w in _ALL_LIST_WORDS.intersection(lower):
        for name in _WORD_LISTS[w]:
            hits[name] = hits.get(name, 0) + lower[w]
    return hits


def _structure_counts(
    text: str, words: list[str], lower: dict[str, int] | None | bool = True, hits: dict[str, int] | None = None
) -> list[int]:
    """len(findall) of each _STRUCTURE pattern, in order. `lower`: the lower-cased word
    counts from _lower_counts, if already made (None: a word is not ASCII); `hits`: their
    _list_counts, if made."""
    if lower is True:
        lower = _lower_counts(words)
    if lower is not None and hits is None:
        hits = _list_counts(lower)
    out = []
    for key, rx in _STRUCTURE_RE.items():
        spec = _STRUCTURE_WORDS.get(key)
        if key == "decimals" and ("." not in text or (text.isascii() and not any(d in text for d in _ASCII_DIGITS))):
            out.append(0)
            continue
        if key == "names":
            out.append(len(_NAMES.findall(text)))
            continue
        if lower is None or (spec is None and key != "percents"):
            out.append(len(rx.findall(text)))
            continue
        if key == "percents":  # %|\bpercent: a word that starts with "percent"
            n = text.count("%")
            if "percent" in text.lower():
                n += sum(c for w, c in lower.items() if w.startswith("percent"))
            out.append(n)
            continue
        assert spec is not None and hits is not None
        _, rest, literal = spec
        n = hits.get(key, 0)
        if rest is not None:
            n += len(rest.findall(text)) if "/" in text else 0  # the one rest pattern is \d+/\d+
        if literal is not None:
            n += text.count(literal)
        out.append(n)
    return out


# _REASONING_WORDS and _CODE split into parts whose matches cannot overlap (each part's
# matches start with characters no other part's can hold), so the parts' counts add up to
# the pattern's: single words come from the word counts, the rest from literals, and the
# regexes left run only when their literal is in the text.
_REASONING_SINGLE = _words("prove proof derive calculate compute solve probability optimise optimize algorithm "
                           "complexity integral equation percent total remaining")
_REASONING_PHRASES = re.compile(r"\b(?:how many|how much|step by step|explain why)\b")  # on lower-cased text
# _STRUCTURE["names"] with the capital first, so the regex engine scans for it instead of
# trying the lookbehinds at every position: (?<=\W[A-Z]) is \b and not at the start,
# (?<![.!?]\s[A-Z]) the same sentence-start test one character later.
_NAMES = re.compile(r"[A-Z](?<=\W[A-Z])(?<![.!?]\s[A-Z])[a-z]+\b")
_CODE_KEYWORDS = re.compile(r"\b(?:def |class |import )")
_CODE_LINE_END = re.compile(r"[{};]\s*$", re.M)


# every word of the word lists -> the lists that hold it (third, fourth, fifth and second are in two)
_WORD_LISTS: dict[str, tuple[str, ...]] = {}
for _name, _vocab in [*((k, v[0]) for k, v in _STRUCTURE_WORDS.items()), ("reasoning", _REASONING_SINGLE)]:
    for _w in _vocab:
        _WORD_LISTS[_w] = (*_WORD_LISTS.get(_w, ()), _name)
_ALL_LIST_WORDS = frozenset(_WORD_LISTS)


def _reasoning_words(text: str, lower: dict[str, int] | None, hits: dict[str, int] | None = None) -> int:
    if lower is None:
        return len(_REASONING_WORDS.findall(text))
    n = (hits if hits is not None else _list_counts(lower)).get("reasoning", 0)
    if "how" in lower or "step" in lower or "explain" in lower:
        n += len(_REASONING_PHRASES.findall(text.lower()))  # re.I on ASCII words (lower is not None)
    return n


def _code_marks(text: str, words: list[str]) -> int:
    n = text.count("```") + text.count("#include") + text.count("=>") + words.count("return") + words.count("function")
    if "def " in text or "class " in text or "import " in text:
        n += len(_CODE_KEYWORDS.findall(text))
    if "{" in text or "}" in text or ";" in text:
        n += len(_CODE_LINE_END.findall(text))
    return n


_ASCII_DIGITS = "0123456789"
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _digit_count(text: str) -> int:
    """sum(map(str.isdigit, text)), with the ASCII digits counted in C."""
    n = sum(text.count(d) for d in _ASCII_DIGITS)
    return n if text.isascii() else n + sum(map(str.isdigit, _NON_ASCII.findall(text)))


CHEAP_FEATURE_NAMES = (
    "log_chars",
    "log_words",
    "log_sentences",
    "log_numbers",
    "digit_share",
    "math_marks_per_100c",
    "code_marks",
    "choices",
    "reasoning_words",
    "question_marks",
    "log_turns",
    "has_system",
    "log_context_chars",
    "log_distinct_numbers",
    "log_longest_number",
    *(f"log_{k}" for k in _STRUCTURE),
)


def cheap_features(messages: list[dict[str, Any]]) -> list[float]:
    """A few numeric features that embeddings capture poorly (size, counts of
    numbers and operators, code, answer options, turn structure, quantitative
    structure). Computed on the last user turn, plus the conversation's shape.
    Order = CHEAP_FEATURE_NAMES."""
    last = _last_user_index(messages) if messages else None
    full = message_text(messages[last].get("content")) if last is not None else ""
    context = sum(len(message_text(m.get("content"))) for i, m in enumerate(messages) if i != last)
    chars = len(full)
    # The regular expressions read the first FEATURE_CHARS only: ~20 of them over a 4 MB
    # prompt took 9 s. Counts over a longer text are scaled up from that sample (the
    # features are logs, so the estimate is as good as the model needs); shorter texts,
    # all but 5 of the 15,361 training prompts among them, get exactly their features.
    text = full[:FEATURE_CHARS]
    scale = chars / len(text) if text else 1.0

    def count(n: int) -> float:
        return n * scale

    digits = _digit_count(text)
    numbers = _NUMBER.findall(text) if digits else []  # no digit (str.isdigit is wider than \d): no number
    words = _WORD.findall(text)
    lower = _lower_counts(words)
    hits = _list_counts(lower) if lower is not None else None
    return [
        math.log1p(chars),
        math.log1p(count(len(words))),
        math.log1p(count(len(_SENTENCE.findall(text)))),
        math.log1p(count(len(numbers))),
        digits / len(text) if text else 0.0,
        100.0 * count(len(_MATH.findall(text))) / (chars + 100.0),
        math.log1p(count(_code_marks(text, words))),
        min(count(len(_CHOICE.findall(text))), 10) / 4.0,
        math.log1p(count(_reasoning_words(text, lower, hits))),
        math.log1p(count(text.count("?"))),
        math.log1p(sum(1 for m in messages if m.get("role") in ("user", "assistant"))),
        1.0 if any(m.get("role") in ("system", "developer") for m in messages) else 0.0,
        math.log1p(context),
        math.log1p(count(len(set(numbers)))),
        math.log1p(max((len(n) for n in numbers), default=0)),
        *(math.log1p(count(n)) for n in _structure_counts(text, words, lower, hits)),
    ]


# -- lexical features --------------------------------------------------------------

_LEX_CHARS = 2000
_TOKEN = re.compile(r"\w+|[^\w\s]")
# On ASCII text the bytes pattern splits exactly as the str one (\w is [A-Za-z0-9_] in
# both) except at the four separators \x1c-\x1f, which only str's \s counts as space.
_TOKEN_BYTES = re.compile(rb"\w+|[^\w\s]")
_STR_ONLY_SPACE = re.compile("[\x1c-\x1f]")


def lexical_indices(messages: list[dict[str, Any]]) -> list[int]:
    """The hashed bag of word unigrams and bigrams of the conversation text
    (lower-cased; punctuation and operators are tokens too, so `=`, `$`, `?`
    count), as sorted distinct bucket indices in [0, LEXICAL_DIM). The
    feature vector is binary and L2-normalised: 1/sqrt(len) at each index.
    CRC32 hashing (stdlib, deterministic across processes and versions);
    only the first _LEX_CHARS characters, which bounds the cost (~0.1 ms)."""
    text = conversation_text(messages)[:_LEX_CHARS].lower() if messages else ""
    crc = zlib.crc32
    if text.isascii() and not _STR_ONLY_SPACE.search(text):
        # the same grams as bytes: crc32 reads them without an encode per gram (a memo of
        # gram -> bucket was no faster inside the gateway: its dict misses the CPU caches)
        tokens = _TOKEN_BYTES.findall(text.encode())
        grams: Any = map(b" ".join, zip(tokens, tokens[1:]))
        return sorted({crc(g) % LEXICAL_DIM for g in tokens} | {crc(g) % LEXICAL_DIM for g in grams})
    words = _TOKEN.findall(text)
    pairs = [f"{a} {b}" for a, b in zip(words, words[1:])]
    return sorted({crc(g.encode()) % LEXICAL_DIM for g in words + pairs})
