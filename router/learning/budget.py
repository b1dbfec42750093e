"""The hourly cap on what learning may spend: tokens and/or USD over the last
hour (a sliding window). A job starts only while the hour's spend is under
every cap, and its calls are charged as they return, so the overshoot is at
most the jobs already running (`learning.max_concurrent`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

HOUR_S = 3600.0


class HourlyBudget:
    def __init__(self, tokens: int | None, usd: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.tokens_cap, self.usd_cap = tokens, usd
        self.clock = clock
        self._spent: deque[tuple[float, int, float]] = deque()
        self.tokens = 0  # in the current window
        self.usd = 0.0

    def _prune(self) -> None:
        cutoff = self.clock() - HOUR_S
        while self._spent and self._spent[0][0] < cutoff:
            _, tok, usd = self._spent.popleft()
            self.tokens -= tok
            self.usd -= usd

    def allows(self) -> bool:
        self._prune()
        if self.tokens_cap is not None and self.tokens >= self.tokens_cap:
            return False
        return not (self.usd_cap is not None and self.usd >= self.usd_cap)

    def spend(self, tokens: int, usd: float) -> None:
        self._spent.append((self.clock(), tokens, usd))
        self.tokens += tokens
        self.usd += usd

    def state(self) -> dict[str, float | int | None]:
        self._prune()
        return {"tokens": self.tokens, "usd": round(self.usd, 6), "tokens_cap": self.tokens_cap, "usd_cap": self.usd_cap}
