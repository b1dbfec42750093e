"""Where the final answer sits in a model's response.

`answer_span` finds the characters of the final answer (the `\\boxed{}`
content, what follows "answer is"/"####", else the last number, else the last
line); `answer_text` returns them. Self-Ref's `answer_span` mode scores only the
tokens there, and `thinkgate calibrate selfref` grades that text against the gold
answer. Confidence tags are hidden first, so they are never taken for an answer.
"""

from __future__ import annotations

import re

from policies.confidence_tags import TAG


def answer_span(text: str) -> tuple[int, int] | None:
    """Character span of the final answer in `text`, or None for blank text.

    Preference: the last `\\boxed{...}` content; the first number (else the rest of
    the line) after the last "answer is" / "answer:" / "####"; the last number;
    the last non-blank line.
    """
    text = TAG.sub(lambda m: " " * len(m.group(0)), text)  # keep offsets, hide tags
    box = text.rfind("\\boxed{")
    if box >= 0:
        start = box + len("\\boxed{")
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        end = i - 1 if depth == 0 else len(text)
        span = _trim(text, start, end)
        if span:
            return span
    marker = _last(_MARKER, text)
    if marker is not None:
        eol = text.find("\n", marker.end())
        eol = len(text) if eol < 0 else eol
        num = _NUMBER.search(text, marker.end(), eol)
        if num:
            return _number_span(num)
        span = _trim(text, marker.end(), eol)
        if span:
            return span
    last = _last(_NUMBER, text)
    if last is not None:
        return _number_span(last)
    end = len(text.rstrip())
    if end == 0:
        return None
    start = text.rfind("\n", 0, end) + 1
    return _trim(text, start, end)


_MARKER = re.compile(r"(?:answer\s*(?:is|=|:)|####)\s*:?", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    m = None
    for m in pattern.finditer(text):  # noqa: B007 - the last match is the one wanted
        pass
    return m


def _number_span(m: re.Match[str]) -> tuple[int, int]:
    s, e = m.span()
    while e > s + 1 and m.string[e - 1] == ",":
        e -= 1
    return s, e


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and (text[start].isspace() or text[start] in "$*"):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in ".*$"):
        end -= 1
    return (start, end) if end > start else None


def answer_text(text: str) -> str | None:
    """The final answer as text (what `answer_span` points at), tags removed."""
    span = answer_span(text)
    return None if span is None else text[span[0] : span[1]]
