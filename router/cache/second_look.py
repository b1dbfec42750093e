"""The semantic cache's second look: a candidate found on the cheap routing vector is
served only if MiniLM, on both texts, agrees it is the same question.

Why: the default routing vector (classifier.encoder static) is a bag of token vectors.
It finds paraphrases well (bench/semantic_cache.py: 90 % recall at 0.95), but it barely
moves when one name in a long word problem changes, so alone it would serve the renamed
problem another person's answer (22 of 24 such pairs at 0.95, against 12 for MiniLM).
Running MiniLM on every request would undo what the static vector saves; running it on
the few requests that already have a candidate costs one small batch (the query and its
candidates' texts) only where a hit may follow, and a hit saves a whole model call. With
candidates from the static vector at `semantic_threshold` (0.85 when the check is on) and
MiniLM's 0.95 on top, the hits are MiniLM's own on the benchmark's pairs (same recall, same
false hits).

The entries keep the text their vector came from (bounded: what MiniLM reads), so the
check needs nothing but the two texts. MiniLM loads on the check's own thread at the first
candidate, or at start through `warmup`, never on the event loop. A failure of the check
is a miss (the request goes to the model), never an error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from router.embedding.encoders import sentence

log = logging.getLogger("thinkgate.cache")

TEXT_CHARS = 2_000  # what an entry keeps of its text: MiniLM reads 256 word pieces, about 1,100 characters
MAX_CANDIDATES = 4  # candidates checked per lookup, best first (one MiniLM batch)


def _default_encoder() -> Any:
    from router.embedding.encoders import make_encoder

    return make_encoder("auto", threads=1)


class SecondLook:
    def __init__(self, threshold: float, encoder_factory: Callable[[], Any] = _default_encoder) -> None:
        self.threshold = threshold
        self._factory = encoder_factory
        self._encoder: Any = None
        # one thread: MiniLM never runs beside itself here, and the routing encoder's
        # workers keep their cores
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thinkgate-cache-check")
        self.stats = {"checked": 0, "confirmed": 0, "refused": 0, "failed": 0}

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            self._encoder = self._factory()
        vecs = np.asarray(sentence(self._encoder.encode(texts)), dtype=np.float32)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

    async def warmup(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._encode, ["warm up"])

    async def similarities(self, query: str, candidates: list[str]) -> list[float]:
        """MiniLM cosine between the query's text and each candidate's; [] when the check
        failed (every candidate is then refused)."""
        if not candidates:
            return []
        texts = [query[:TEXT_CHARS], *(c[:TEXT_CHARS] for c in candidates)]
        try:
            vecs = await asyncio.get_running_loop().run_in_executor(self._executor, self._encode, texts)
        except Exception:  # a failing check degrades to a miss
            log.exception("cache: the semantic second look failed; serving no semantic hit")
            self.stats["failed"] += 1
            return []
        self.stats["checked"] += len(candidates)
        return [float(x) for x in vecs[1:] @ vecs[0]]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
