"""The conversation embedder the pipeline awaits: one routing vector per
request (router.encoders: the 384-d L2-normalised sentence embedding, then the
per-layer means), shared by the difficulty classifier (all of it) and the
semantic cache (`sentence(v)`).

Concurrent callers are batched: while one forward pass runs on the worker
thread, new requests queue up and go together in the next pass, so under load
N requests cost far fewer than N passes, and a lone request waits for nobody
(`batch_wait_ms` > 0 trades a little latency for bigger batches). The forward
pass runs on one dedicated thread, never on the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from policies.features import conversation_text
from router.encoders import Encoder, HashEncoder, make_encoder

if TYPE_CHECKING:
    from policies.difficulty import DifficultyClassifier
    from router.config import ClassifierSettings

log = logging.getLogger("thinkgate.embedding")


class AsyncEmbedder:
    def __init__(
        self, encoder: Encoder, *, batch_max: int = 16, batch_wait_ms: float = 0.0, memo: int = 1024
    ) -> None:
        self.encoder = encoder
        self.id = encoder.id
        self.dim = encoder.dim
        self.batch_max = batch_max
        self.batch_wait = batch_wait_ms / 1000.0
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thinkgate-embed")
        # Recently embedded texts (retries, cache replays, repeated prompts).
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_max = memo
        self.batches = 0  # forward passes run (observability, tests)

    async def embed(self, messages: list[dict[str, Any]]) -> np.ndarray:
        return await self.embed_text(conversation_text(messages))

    async def embed_text(self, text: str) -> np.ndarray:
        hit = self._memo.get(text)
        if hit is not None:
            self._memo.move_to_end(text)
            return hit
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        if self._drainer is not None and self._drainer.get_loop() is not loop:
            # first use under a new event loop (the old one is gone): drop its waiters
            self._pending = [(t, f) for t, f in self._pending if f.get_loop() is loop]
            self._drainer = None
        self._pending.append((text, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        # Let callers scheduled in the same loop iteration join the first batch.
        await asyncio.sleep(self.batch_wait)
        while self._pending:
            batch = [(t, f) for t, f in self._pending[: self.batch_max] if not f.done()]
            del self._pending[: self.batch_max]
            if not batch:
                continue
            texts = list(dict.fromkeys(t for t, _ in batch))
            try:
                vecs = await loop.run_in_executor(self._executor, self.encoder.encode, texts)
            except Exception as e:  # hand the failure to every waiter, keep serving
                log.exception("embedding failed for a batch of %d", len(texts))
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            self.batches += 1
            by_text = dict(zip(texts, vecs))
            for t, f in batch:
                if not f.done():
                    f.set_result(by_text[t])
            for t, v in by_text.items():
                self._memo[t] = v
                if len(self._memo) > self._memo_max:
                    self._memo.popitem(last=False)

    async def warmup(self) -> None:
        await self.embed_text("warm up")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def fake_embedder() -> AsyncEmbedder:
    """An embedder with no model (hashed bag of words): for tests and demos."""
    return AsyncEmbedder(HashEncoder())


def build_router_model(settings: ClassifierSettings) -> tuple[AsyncEmbedder | None, DifficultyClassifier | None]:
    """The embedder and classifier for the pipeline, from config.

    Disabled: (None, None) and the routes' defaults apply; no artifact: the
    embedder alone (the semantic cache still uses it). The artifact's versions
    are checked before the encoder is built, so a mismatched artifact fails
    fast with its message (policies.difficulty.ArtifactError); its embedding
    width once the encoder is known."""
    if not settings.enabled:
        return None, None
    from policies.difficulty import ArtifactError, DifficultyClassifier

    classifier = DifficultyClassifier.load(settings.artifact) if settings.artifact else None
    encoder = make_encoder(settings.embedder, threads=settings.threads)
    if classifier is not None and classifier.embedding_dim > encoder.dim:
        raise ArtifactError(
            f"{settings.artifact}: the classifier reads {classifier.embedding_dim} embedding values (sentence embedding + "
            f"layer means) but embedder {settings.embedder!r} gives {encoder.dim}; use embedder onnx/torch/auto or "
            "retrain the artifact on this embedder"
        )
    embedder = AsyncEmbedder(encoder, batch_max=settings.batch_max, batch_wait_ms=settings.batch_wait_ms)
    return embedder, classifier
