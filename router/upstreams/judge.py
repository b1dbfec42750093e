"""Asks a configured model to judge two answers (the prompts, the parsing and the
scoring rule are `policies.judge`, shared with the gateway's shadow grading). Used offline by `thinkgate calibrate collect`
and available to the gateway's shadow sampling: both hold an `Upstream`.

    j = await judge_pair(upstream, question, fast_answer, strong_answer, mode="pairwise")
    j.fast, j.strong   # 0..1 each, or None when a verdict could not be read

A failed judge call (an `UpstreamError`) is a missing grade, never an exception
for the caller: one bad call must not end a collection run or touch a client.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from policies import judge as rules
from router.errors import UpstreamError
from router.upstreams.base import CallContext, Upstream

Mode = Literal["pairwise", "absolute"]
MODES: tuple[str, ...] = ("pairwise", "absolute")


@dataclass
class Judgement:
    fast: float | None = None
    strong: float | None = None
    # pairwise: [verdict with fast as A, verdict with fast as B]; absolute: [fast rating, strong rating]
    verdicts: list[Any] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def missing(self) -> bool:
        return self.fast is None or self.strong is None


async def judge_pair(
    upstream: Upstream,
    question: str,
    fast_answer: str,
    strong_answer: str,
    *,
    mode: Mode = "pairwise",
    reference: str | None = None,
    max_tokens: int = 512,
    timeout: float | None = None,
    sequential: bool = False,
) -> Judgement:
    """Grade a fast and a strong answer to `question` with the judge `upstream`.

    pairwise: two calls, the answers in both orders; absolute: one rating call per
    answer (with `reference` shown to the judge when given). `sequential` makes
    the two calls one after the other (servers that answer one request at a time)."""
    if mode == "pairwise":
        convs = [
            rules.pairwise_messages(question, fast_answer, strong_answer),
            rules.pairwise_messages(question, strong_answer, fast_answer),
        ]
    elif mode == "absolute":
        convs = [rules.absolute_messages(question, a, reference) for a in (fast_answer, strong_answer)]
    else:
        raise ValueError(f"unknown judge mode {mode!r} (have: {', '.join(MODES)})")
    out = Judgement()

    async def ask(messages: list[dict[str, Any]]) -> str | None:
        body = {"model": upstream.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        try:
            resp = await upstream.complete(body, CallContext(timeout=timeout))
        except UpstreamError as e:
            out.error = f"{type(e).__name__}: {e}"[:300]
            return None
        usage = resp.get("usage") or {}
        out.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        out.completion_tokens += int(usage.get("completion_tokens") or 0)
        choice = (resp.get("choices") or [{}])[0]
        return (choice.get("message") or {}).get("content") or choice.get("text") or ""

    if sequential:
        replies = [await ask(c) for c in convs]
    else:
        replies = list(await asyncio.gather(*(ask(c) for c in convs)))
    out.replies = [r or "" for r in replies]
    if mode == "pairwise":
        out.verdicts = [rules.parse_verdict(r) for r in replies]
        scores = rules.pairwise_scores(out.verdicts[0], out.verdicts[1])
        if scores is not None:
            out.fast, out.strong = scores
    else:
        out.verdicts = [rules.parse_rating(r) for r in replies]
        out.fast, out.strong = (rules.absolute_score(v) for v in out.verdicts)
        if out.fast is None or out.strong is None:
            out.fast = out.strong = None  # one rating alone cannot say which was better
    if out.missing and out.error is None:
        out.error = "unparseable verdict"
    return out
