"""Grading an answer against a reference answer: pure functions, no I/O.

Three kinds, chosen per prompt (`calibrate collect --grader`, or a column):
- `math`: the final answer (`\\boxed{}`, "the answer is", "####", else the last
  number; located by `policies.final_answer`) equals the reference numerically
  (fractions, `\\frac`, percentages, thousands separators) or as normalised LaTeX
  (`\\left(`, `\\dfrac`, `\\text{}`, `^\\circ`, spaces and `$` dropped).
- `choice`: the multiple-choice letter (A-J) the answer commits to equals the reference's.
- `exact`: the answer, or its final-answer span, equals the reference after
  SQuAD-style normalisation (case, punctuation, articles, whitespace).

Each returns 1.0 or 0.0. An answer in which no answer can be found is wrong (0.0),
not missing: the model was asked and did not answer. `auto_kind` picks a kind
from the reference alone.
"""

from __future__ import annotations

import math
import re
import string
from fractions import Fraction

from policies.confidence_tags import strip_confidence_token
from policies.final_answer import answer_text

KINDS: tuple[str, ...] = ("math", "choice", "exact")
LETTERS = "ABCDEFGHIJ"


def grade(kind: str, answer: str, reference: str) -> float:
    """1.0 when `answer` matches `reference` under grader `kind`, else 0.0."""
    if kind == "math":
        return float(math_equal(final_math_answer(answer), reference))
    if kind == "choice":
        ref = choice_letter(reference)
        if ref is None:
            raise ValueError(f"reference {reference!r} is not a choice letter A-J")
        return float(choice_letter(answer) == ref)
    if kind == "exact":
        ref = normalize_text(reference)
        if normalize_text(answer) == ref:
            return 1.0
        final = answer_text(strip_confidence_token(answer))
        return float(final is not None and normalize_text(final) == ref)
    raise ValueError(f"unknown grader {kind!r} (have: {', '.join(KINDS)})")


def auto_kind(reference: str) -> str:
    """A single letter A-J (optionally "(B)" / "B.") is a choice; a number or
    LaTeX is math; anything else is exact match."""
    ref = reference.strip()
    if re.fullmatch(r"\(?[A-J]\)?\.?", ref):
        return "choice"
    if _number(_normalize_math(ref)) is not None or re.search(r"\\[a-zA-Z]+|\^|_\{|\d", ref) and len(ref) <= 40:
        return "math"
    return "exact"


# ---------------------------------------------------------------- math


def final_math_answer(answer: str) -> str | None:
    return answer_text(strip_confidence_token(answer))


def math_equal(pred: str | None, reference: str) -> bool:
    if pred is None:
        return False
    a, b = _normalize_math(pred), _normalize_math(reference)
    if a == b:
        return True
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)
    # "x = 5" against "5", or a tuple / list compared element by element
    if ("=" in a) != ("=" in b):
        return math_equal(a.rsplit("=", 1)[-1], b.rsplit("=", 1)[-1])
    pa, pb = _parts(a), _parts(b)
    if len(pa) > 1 and len(pa) == len(pb):
        return all(math_equal(p, q) for p, q in zip(pa, pb))
    return False


_STRIP = (
    r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\ ", "\\displaystyle", "$",
    "^\\circ", "^{\\circ}", "\\circ", "°", "\\%", "%", "\\$",
)  # fmt: skip
_UNIT = re.compile(r"\\(?:text|textbf|mbox|mathrm)\{\s*[a-zA-Z ]*(?:units?|degrees?|cm|m|inches|feet|dollars|cents)\s*\}")


def _normalize_math(s: str) -> str:
    s = s.strip()
    for m in re.finditer(r"\\boxed\{", s):  # a reference written as \boxed{...}
        s = s[m.end() :].rsplit("}", 1)[0]
        break
    s = _UNIT.sub("", s)
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}", r"\1", s)
    for token in _STRIP:
        s = s.replace(token, "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", s)  # 1,000 -> 1000 (but "1,-2" stays a list)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".").lower()


def _number(s: str) -> float | None:
    while len(s) > 1 and (s[0], s[-1]) in (("{", "}"), ("(", ")")):
        s = s[1:-1]
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}", s)
    if m:
        den = float(m.group(3))
        return None if den == 0 else (-1 if m.group(1) else 1) * float(m.group(2)) / den
    try:
        return float(Fraction(s)) if "/" in s else float(s)
    except (ValueError, ZeroDivisionError):
        return None


def _parts(s: str) -> list[str]:
    s = s.strip()
    if s[:1] in "([{" and s[-1:] in ")]}":
        s = s[1:-1]
    depth, out, cur = 0, [], ""
    for ch in s:
        depth += {"{": 1, "(": 1, "[": 1, "}": -1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur]


# ---------------------------------------------------------------- choice


_CHOICE_PATTERNS = (
    # "the answer is (B)", "Answer: B", "**Final Answer** B"
    re.compile(r"answer(?:\s+is)?\s*[:=]?\s*\**\s*\(?([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"\\boxed\{\s*\(?([A-J])\)?\s*\}"),
    re.compile(r"^\s*\**\(?([A-J])\)?(?:[.):]|\s*$)"),  # starts with the letter: "B. ...", "(B)", "B"
    re.compile(r"\(([A-J])\)"),  # the last "(B)" anywhere
)


def choice_letter(text: str) -> str | None:
    """The option letter `text` commits to, or None. The answer marker wins over a
    leading letter, and the last marker over earlier ones (models restate options)."""
    text = strip_confidence_token(text)
    for pat in _CHOICE_PATTERNS:
        found = [m.group(1) for m in pat.finditer(text)]
        found = [f.upper() for f in found if f.upper() in LETTERS and (f.isupper() or pat is _CHOICE_PATTERNS[0])]
        if found:
            return found[-1]
    return None


# ---------------------------------------------------------------- exact


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(s: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    s = strip_confidence_token(s).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())
