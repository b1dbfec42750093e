"""A scripted judge for the learning tests."""

from __future__ import annotations

import re
from typing import Any

from router.learning.testing import write_artifact  # noqa: F401  (the tests' artifacts)
from router.upstreams.fake import FakeReply


def judge_prefers(word: str) -> Any:
    """A judge handler that names whichever answer (A or B) contains `word`, else a tie."""

    def handler(body: dict[str, Any]) -> FakeReply:
        user = body["messages"][-1]["content"]
        a = re.search(r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End", user, re.S)
        b = re.search(r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End", user, re.S)
        assert a and b, "the judge was not shown two answers"
        in_a, in_b = word in a.group(1), word in b.group(1)
        return FakeReply("[[A]]" if in_a and not in_b else "[[B]]" if in_b and not in_a else "[[C]]")

    return handler
