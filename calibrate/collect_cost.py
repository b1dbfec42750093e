"""What a `calibrate collect` run will cost, and the budget that stops it.

Prices are the config's (`models.<name>.price`, USD per 1M tokens). Before any
call the tokens are bounded: a prompt at one token per UTF-8 byte (a byte-level
or byte-fallback tokenizer never makes a token of less than one byte; the old
3 characters a token undercounted, and with the reasoning role's system prompt
left out a run spent 1.14x its "at most"), plus a chat template's overhead
(a default system prompt and role markers), plus the system prompt a DEER model
is given, every completion at its `max_tokens`. `collect` reports the bound
against what was spent. The budget reserves each row's bound before the row
starts and settles it with the usage the servers report, so a run never starts a
row that could take it past the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policies.features import as_messages, message_text
from router.config import Price

TEMPLATE_TOKENS = 16  # role markers and the like, per message
DEFAULT_SYSTEM_TOKENS = 64  # a template's own system prompt (SmolLM2's is ~20 tokens), once per call
JUDGE_PROMPT_TOKENS = 220  # the judge's instructions (policies.judge), measured on SmolLM2's tokenizer ~ 200


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 3)


def prompt_tokens(prompt: str | list[dict]) -> int:
    return sum(text_tokens(message_text(m.get("content"))) + TEMPLATE_TOKENS for m in as_messages(prompt))


def prompt_bound(prompt: str | list[dict], system: str | None = None) -> int:
    """At most this many prompt tokens: one per byte, the template's overhead, and the
    system prompt the model is given on top of the messages (a DEER thinking prompt)."""
    texts = [message_text(m.get("content")) for m in as_messages(prompt)] + ([system] if system else [])
    return DEFAULT_SYSTEM_TOKENS + sum(len(t.encode("utf-8")) + TEMPLATE_TOKENS for t in texts)


def cost(price: Price, prompt: int, completion: int) -> float:
    return (prompt * price.input + completion * price.output) / 1e6


@dataclass
class RowEstimate:
    """Upper bounds for one row: tokens and USD of each call kind."""

    tokens: int = 0
    usd: float = 0.0

    def add(self, price: Price, prompt: int, completion: int) -> None:
        self.tokens += prompt + completion
        self.usd += cost(price, prompt, completion)


def row_estimate(
    prompt: str | list[dict],
    *,
    fast: Price,
    strong: Price,
    max_tokens: int,
    strong_max_tokens: int,
    judge: Price | None = None,
    judge_mode: str | None = None,
    judge_max_tokens: int = 0,
    strong_system: str | None = None,
) -> RowEstimate:
    pt = prompt_bound(prompt)
    est = RowEstimate()
    est.add(fast, pt, max_tokens)
    est.add(strong, prompt_bound(prompt, strong_system), strong_max_tokens)
    if judge is not None and judge_mode is not None:
        # two judge calls: each shows the question and both answers (pairwise) or one (absolute)
        answers = max_tokens + strong_max_tokens if judge_mode == "pairwise" else max(max_tokens, strong_max_tokens)
        for _ in range(2):
            est.add(judge, pt + JUDGE_PROMPT_TOKENS + answers, judge_max_tokens)
    return est


class Budget:
    """USD and/or token caps; `None` caps nothing. Not thread-safe: one event loop."""

    def __init__(self, usd: float | None = None, tokens: int | None = None) -> None:
        self.usd, self.tokens = usd, tokens
        self.spent_usd = 0.0
        self.spent_tokens = 0
        self._held_usd = 0.0
        self._held_tokens = 0

    def reserve(self, est: RowEstimate) -> bool:
        """Hold a row's upper bound; False (nothing held) when it could exceed a cap."""
        if self.usd is not None and self.spent_usd + self._held_usd + est.usd > self.usd + 1e-12:
            return False
        if self.tokens is not None and self.spent_tokens + self._held_tokens + est.tokens > self.tokens:
            return False
        self._held_usd += est.usd
        self._held_tokens += est.tokens
        return True

    def settle(self, est: RowEstimate, usd: float, tokens: int) -> None:
        self._held_usd -= est.usd
        self._held_tokens -= est.tokens
        self.spent_usd += usd
        self.spent_tokens += tokens
