"""The Self-REF confidence tags `<CN>` / `<UN>`, and hiding them from the client.

Models fine-tuned the Self-REF way (Chuang et al.) end their answer with `<CN>`
(confident) or `<UN>` (unsure). The scorers in `policies.selfref` and the answer
extraction in `policies.final_answer` read them through `TAG`; the client must
never see them, so a kept fast answer is stripped here, whole (`strip_choice`)
or as it streams (`TagFilter`, which holds back a tag split over deltas).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

CONFIDENT_TAG = "<CN>"
UNSURE_TAG = "<UN>"
TAG = re.compile(r"<(CN|UN)>")  # the one pattern the scorers and answer extraction share
_STRIP = re.compile(r"[ \t]*<(?:CN|UN)>")


def strip_confidence_token(text: str) -> str:
    """Remove `<CN>` / `<UN>` (and the blanks just before them) from answer text."""
    if "<" not in text:
        return text
    out = _STRIP.sub("", text)
    return out.rstrip() if _TAG_AT_END.search(text) else out


_TAG_AT_END = re.compile(r"<(?:CN|UN)>\s*$")


def strip_choice(choice: Mapping[str, Any], keep_logprobs: bool = True) -> dict[str, Any]:
    """A copy of a chat/completions choice with tags removed from the visible text."""
    out = dict(choice)
    msg = out.get("message")
    if isinstance(msg, Mapping) and isinstance(msg.get("content"), str):
        out["message"] = {**msg, "content": strip_confidence_token(msg["content"])}
    if isinstance(out.get("text"), str):
        out["text"] = strip_confidence_token(out["text"])
    if not keep_logprobs:
        out["logprobs"] = None
    return out


class TagFilter:
    """Incremental tag stripping for streamed deltas.

    Holds back a suffix that could still become `<CN>`/`<UN>` (a tag may be split
    over deltas) and releases it once it cannot. `feed` returns text safe to send;
    `flush` returns the remainder at the end of the stream.
    """

    def __init__(self) -> None:
        self._buf = ""

    def feed(self, delta: str) -> str:
        self._buf += delta
        self._buf = _STRIP.sub("", self._buf)
        keep = _held_suffix(self._buf)
        # trailing blanks are held too: they are dropped with a tag that follows them
        cut = len(self._buf) - keep
        while cut > 0 and self._buf[cut - 1] in " \t":
            cut -= 1
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return out

    def flush(self) -> str:
        out, self._buf = _STRIP.sub("", self._buf), ""
        return out


def _held_suffix(s: str) -> int:
    for n in range(min(len(s), 3), 0, -1):
        tail = s[-n:]
        if CONFIDENT_TAG.startswith(tail) or UNSURE_TAG.startswith(tail):
            return n
    return 0
