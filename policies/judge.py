"""A pairwise LLM judge, pure: the prompt it is shown and how its verdict is read.

Used by the gateway's shadow grading (router/learning/) and usable by offline
collection (calibrate) alike; the call itself is made by the caller, with any
configured model. The wording follows MT-Bench's pairwise judge ("[[A]]",
"[[B]]", "[[C]]" for a tie). Position bias is cancelled as RouteLLM labelled
its data: the pair is judged twice with the answers swapped, and a winner that
changes with the order counts as a tie.

    msgs = pairwise_messages(question, fast_answer, strong_answer)       # order 1
    msgs2 = pairwise_messages(question, strong_answer, fast_answer)      # order 2
    fast, strong = pairwise_scores(parse_verdict(text1), parse_verdict(text2))

Absolute (MT-Bench's single-answer grading, used by `calibrate collect --grader
judge-absolute`): the judge rates one answer 1-10 and ends with `Rating: [[N]]`;
the score is N / 10, and a reference answer, when there is one, is shown to the
judge (MT-Bench does so for math and reasoning). A rating that cannot be read is
None, never guessed.
"""

from __future__ import annotations

import re
from typing import Literal

Verdict = Literal["A", "B", "tie"]
JUDGE_VERSION = "pairwise-both-orders/1"

SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question displayed below. Choose the assistant that follows the user's instructions and answers "
    "the user's question better, considering correctness first, then helpfulness, relevance and depth. Do not let "
    "the order of the responses, their length or the assistants' names influence you. Output your final verdict "
    'strictly in this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)

_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_BARE = re.compile(r"^\W*(A|B|C|tie)\W*$", re.IGNORECASE)


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + "\n[... cut]"


def pairwise_messages(question: str, answer_a: str, answer_b: str, *, max_chars: int = 4000) -> list[dict[str, str]]:
    """The chat messages that ask the judge which of two answers is better."""
    user = (
        f"[User Question]\n{_cut(question, max_chars)}\n\n"
        f"[The Start of Assistant A's Answer]\n{_cut(answer_a, max_chars)}\n[The End of Assistant A's Answer]\n\n"
        f"[The Start of Assistant B's Answer]\n{_cut(answer_b, max_chars)}\n[The End of Assistant B's Answer]\n\n"
        'Your verdict ("[[A]]", "[[B]]" or "[[C]]"):'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_verdict(text: str | None) -> Verdict | None:
    """The judge's verdict, or None when it gave none (or contradicting ones).
    The last bracketed verdict wins (judges often explain first); a bare
    "A"/"B"/"C"/"tie" reply is accepted from small judges that drop the brackets."""
    if not text:
        return None
    found = _VERDICT.findall(text)
    if found:
        v = found[-1]
    else:
        m = _BARE.match(text.strip())
        if m is None:
            return None
        v = m.group(1).upper()
    return "tie" if v in ("C", "TIE") else v  # type: ignore[return-value]


def pairwise_scores(fast_first: Verdict | None, strong_first: Verdict | None) -> tuple[float, float] | None:
    """(fast, strong) quality in 0..1 from the two orders: `fast_first` is the
    verdict with the fast answer shown as A, `strong_first` with it shown as B.
    Each order gives the winner 1, the loser 0, a tie 0.5 each; the two orders
    are averaged, so a judge that always names A yields a tie. None when either
    order has no verdict (the pair is not graded)."""
    if fast_first is None or strong_first is None:
        return None
    strong = (_strong_points(fast_first, strong_is="B") + _strong_points(strong_first, strong_is="A")) / 2
    return 1.0 - strong, strong


def _strong_points(v: Verdict, *, strong_is: str) -> float:
    if v == "tie":
        return 0.5
    return 1.0 if v == strong_is else 0.0


# ---------------------------------------------------------------- absolute (1-10) grading

ABSOLUTE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of the response. Be as objective as "
    "possible. After a short explanation, you must rate the response on a scale of 1 to 10 by strictly "
    'following this format: "Rating: [[5]]".'
)

ABSOLUTE_REFERENCE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. Your evaluation should consider correctness and helpfulness. "
    "You will be given a reference answer and the assistant's answer. Compare the assistant's answer with "
    "the reference answer and identify any mistakes. Be as objective as possible. After a short "
    'explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: '
    '"Rating: [[5]]".'
)

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_LOOSE = re.compile(r"rating\s*[:=]?\s*\[?\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*\]?", re.IGNORECASE)


def absolute_messages(question: str, answer: str, reference: str | None = None, *, max_chars: int = 4000) -> list[dict[str, str]]:
    """The chat messages that ask the judge to rate one answer 1-10 (against `reference` if given)."""
    ref = f"[The Start of Reference Answer]\n{_cut(reference, max_chars)}\n[The End of Reference Answer]\n\n" if reference else ""
    user = (
        f"[Question]\n{_cut(question, max_chars)}\n\n{ref}"
        f"[The Start of Assistant's Answer]\n{_cut(answer, max_chars)}\n[The End of Assistant's Answer]"
    )
    return [{"role": "system", "content": ABSOLUTE_REFERENCE_SYSTEM if reference else ABSOLUTE_SYSTEM}, {"role": "user", "content": user}]


def parse_rating(text: str | None) -> float | None:
    """The 1-10 rating from `Rating: [[N]]` (or `Rating: N`, `Rating: N/10`); None
    when absent, ambiguous (two different ratings) or outside 1..10."""
    if not text:
        return None
    found = {float(m) for m in _RATING.findall(text)} or {float(m) for m in _RATING_LOOSE.findall(text)}
    if len(found) != 1:
        return None
    r = found.pop()
    return r if 1.0 <= r <= 10.0 else None


def absolute_score(rating: float | None) -> float | None:
    return None if rating is None else rating / 10.0
