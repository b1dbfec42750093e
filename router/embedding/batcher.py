"""The conversation embedder the pipeline awaits: one routing vector per
request, shared by the difficulty classifier (all of it), the semantic cache,
the decision log and shadow sampling (`sentence(v)`). With the default
`classifier.encoder: static` it is the 256-d model2vec vector
(router/embedding/static.py); with `minilm` the 384-d L2-normalised sentence
embedding, then the per-layer means (router.embedding.encoders).

Concurrent callers are batched: while a forward pass runs on a worker
thread, new requests queue up and go together in the next pass, and a lone
request waits for nobody (`batch_wait_ms` > 0 trades a little latency for
bigger batches). Batching pays only for short prompts: on a CPU a batch pads
to its longest text and runs no faster per token, so 16 prompts of 16 tokens
cost 1.9 ms each in one pass against 3.1 ms one by one, while at 128 tokens a
batch of 16 costs 23 ms each against 19 ms (the "per prompt by batch size"
table of bench/routing.py). A batch is therefore capped at `batch_tokens` padded tokens
(estimated from the text length) as well as `batch_max` texts. With
`workers` > 1, that many batches run at once on their own threads (one core
each at one ORT thread): the throughput of a gateway under load scales with
the cores it is given. Forward passes never run on the event loop.

`embed(messages, then=f)` also runs `f(vector)` on the worker, in the same job as the
batch's forward pass (the classifier's features and head): one thread handoff per batch
instead of one more per request. A handoff costs thread wake-ups and GIL handovers: on a
2-core machine the separate classifier handoff came to 0-0.5 ms of CPU per routed
request (bench/gateway_ab.py; README "Capacity")."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from policies.features import conversation_text
from router import errors
from router.embedding.encoders import EMBEDDER_ID, MAX_TOKENS, Encoder, HashEncoder, make_encoder

if TYPE_CHECKING:
    from policies.difficulty import DifficultyClassifier
    from router.config import ClassifierSettings

log = logging.getLogger("thinkgate.embedding")


class _Raised:
    """A waiter's `then` raised on the worker: the error its caller gets."""

    def __init__(self, error: Exception) -> None:
        self.error = error


_LATER = object()  # the batch failed and was retried text by text: `then` not run yet
_Waiter = tuple[str, "asyncio.Future[Any]", "Callable[[np.ndarray], Any] | None"]

# the static encoder's batch policy unless the config sets one (bench/routing.py, README "Capacity")
STATIC_BATCH_TOKENS = 4096
STATIC_BATCH_MAX = 64


def approx_tokens(text: str) -> int:
    """Word pieces the encoder will read, roughly (English averages ~4
    characters a piece; [CLS] and [SEP] add 2; the model reads at most 256).
    Only sizes batches, so a rough figure is enough and costs nothing."""
    return min(MAX_TOKENS, 2 + len(text) // 4)


class AsyncEmbedder:
    def __init__(
        self, encoder: Encoder, *, batch_max: int = 16, batch_tokens: int = 256, workers: int = 1,
        batch_wait_ms: float = 0.0, memo: int = 1024,
    ) -> None:
        self.encoder = encoder
        self.id = encoder.id
        self.dim = encoder.dim
        self.batch_max = batch_max
        self.batch_tokens = batch_tokens
        self.workers = workers
        self.batch_wait = batch_wait_ms / 1000.0
        self._pending: list[_Waiter] = []
        self._bulk: list[_Waiter] = []
        self._drainers: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thinkgate-embed")
        # Recently embedded texts (retries, cache replays, repeated prompts).
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_max = memo
        self.batches = 0  # forward passes run (observability, tests)

    async def embed(self, messages: list[dict[str, Any]], then: Callable[[np.ndarray], Any] | None = None) -> Any:
        """The conversation's vector; with `then`, (vector, then(vector)), `then` run on
        the worker right after the forward pass. An exception in `then` is raised here,
        with the vector lost for this caller only."""
        return await self.embed_text(conversation_text(messages), then=then)

    async def embed_text(self, text: str, *, bulk: bool = False, then: Callable[[np.ndarray], Any] | None = None) -> Any:
        """`bulk`: a /v1/embeddings input. Those wait behind every routing text, so a
        client embedding thousands of documents never delays another's chat request;
        a bulk caller that goes away (cancelled) leaves its texts unembedded."""
        loop = asyncio.get_running_loop()
        hit = self._memo.get(text)
        if hit is not None:
            self._memo.move_to_end(text)
            if then is None:
                return hit
            return hit, await loop.run_in_executor(self._executor, then, hit)
        fut: asyncio.Future[Any] = loop.create_future()
        if any(d.get_loop() is not loop for d in self._drainers):
            # first use under a new event loop (the old one is gone): drop its waiters
            self._pending = [w for w in self._pending if w[1].get_loop() is loop]
            self._bulk = [w for w in self._bulk if w[1].get_loop() is loop]
            self._drainers = {d for d in self._drainers if d.get_loop() is loop}
        (self._bulk if bulk else self._pending).append((text, fut, then))
        self._drainers = {d for d in self._drainers if not d.done()}
        if len(self._drainers) < self.workers:
            self._drainers.add(loop.create_task(self._drain()))
        return await fut

    def _next_batch(self) -> list[_Waiter]:
        """The oldest waiters, up to batch_max texts and batch_tokens padded
        tokens (the batch pads to its longest text); at least one."""
        batch: list[_Waiter] = []
        longest = 0
        for queue in (self._pending, self._bulk):  # routing texts first, bulk inputs after
            while queue and len(batch) < self.batch_max:
                text, fut, _ = queue[0]
                if fut.done():  # its caller went away
                    queue.pop(0)
                    continue
                longest_with = max(longest, approx_tokens(text))
                if batch and longest_with * (len(batch) + 1) > self.batch_tokens:
                    return batch
                batch.append(queue.pop(0))
                longest = longest_with
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        # Let callers scheduled in the same loop iteration join the first batch.
        await asyncio.sleep(self.batch_wait)
        while self._pending or self._bulk:
            batch = self._next_batch()
            if not batch:
                continue
            texts = list(dict.fromkeys(w[0] for w in batch))
            by_text: dict[str, Any] = {}
            extras: list[Any] = [_LATER] * len(batch)  # until the job says otherwise
            try:
                vecs, extras = await loop.run_in_executor(self._executor, self._run, texts, batch)
                by_text = dict(zip(texts, vecs))
                self.batches += 1
            except Exception:
                if len(texts) == 1:
                    log.exception("embedding failed for one text")
                else:
                    # one text may have broken the batch: each is tried alone, so only the
                    # text that fails on its own fails its caller (one tenant's input never
                    # fails another's request)
                    log.warning("embedding failed for a batch of %d; retrying each text alone", len(texts))
                for t in texts if len(texts) > 1 else ():
                    try:
                        by_text[t] = (await loop.run_in_executor(self._executor, self.encoder.encode, [t]))[0]
                        self.batches += 1
                    except Exception:
                        log.exception("embedding failed for one text")
            for (t, f, then), extra in zip(batch, extras):
                if f.done():
                    continue
                if t not in by_text:
                    f.set_exception(errors.EmbeddingFailed("the request's text could not be embedded"))
                elif then is None:
                    f.set_result(by_text[t])
                elif extra is _LATER:  # the batch was retried text by text: its `then` runs now, off the loop
                    try:
                        extra = await loop.run_in_executor(self._executor, then, by_text[t])
                    except Exception as e:
                        extra = _Raised(e)
                    if f.done():
                        continue
                    if isinstance(extra, _Raised):
                        f.set_exception(extra.error)
                    else:
                        f.set_result((by_text[t], extra))
                elif isinstance(extra, _Raised):
                    f.set_exception(extra.error)
                else:
                    f.set_result((by_text[t], extra))
            for t, v in by_text.items():
                self._memo[t] = v
                if len(self._memo) > self._memo_max:
                    self._memo.popitem(last=False)

    def _run(self, texts: list[str], batch: list[_Waiter]) -> tuple[np.ndarray, list[Any]]:
        """On the worker: the forward pass, then each waiter's `then` on its vector. A
        `then` that raises fails its own caller only (_Raised), never the batch."""
        vecs = self.encoder.encode(texts)
        by_text = dict(zip(texts, vecs))
        extras: list[Any] = []
        for text, fut, then in batch:
            if then is None or fut.done():
                extras.append(None)
                continue
            try:
                extras.append(then(by_text[text]))
            except Exception as e:
                extras.append(_Raised(e))
        return vecs, extras

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
    embedder alone (the semantic cache still uses it). `encoder` picks the
    family of the one vector every consumer reads (static: the model2vec
    distillation, the default; minilm: the `embedder` runtime); `embedder:
    hash` is the no-model stand-in for either. The artifact's versions and
    family are checked before the encoder is built, so a mismatched artifact
    fails fast with its message (policies.difficulty.ArtifactError); its
    embedding width once the encoder is known."""
    if not settings.enabled:
        return None, None
    from policies.difficulty import ArtifactError, DifficultyClassifier

    static = settings.encoder == "static"
    family = EMBEDDER_ID
    if static:
        from router.embedding.static import STATIC_ID

        family = STATIC_ID
    classifier = DifficultyClassifier.load(settings.artifact, embedder_id=family) if settings.artifact else None
    if static and settings.embedder != "hash":
        from router.embedding.static import StaticEncoder

        encoder: Encoder = StaticEncoder()
    else:
        encoder = make_encoder(settings.embedder, threads=settings.threads)
    if classifier is not None and classifier.embedding_dim > encoder.dim:
        raise ArtifactError(
            f"{settings.artifact}: the classifier reads {classifier.embedding_dim} embedding values (sentence embedding + "
            f"layer means) but embedder {settings.embedder!r} gives {encoder.dim}; use embedder onnx/torch/auto or "
            "retrain the artifact on this embedder"
        )
    batch_max, batch_tokens = settings.batch_max, settings.batch_tokens
    if static and settings.embedder != "hash":
        # a bag of token vectors pads nothing, so bigger batches only share the per-call cost:
        # 32 concurrent real prompts, 1 worker, 133 -> 163 decisions/s (bench/routing.py)
        if "batch_tokens" not in settings.model_fields_set:
            batch_tokens = STATIC_BATCH_TOKENS
        if "batch_max" not in settings.model_fields_set:
            batch_max = STATIC_BATCH_MAX
    embedder = AsyncEmbedder(
        encoder, batch_max=batch_max, batch_tokens=batch_tokens, workers=settings.workers,
        batch_wait_ms=settings.batch_wait_ms,
    )
    return embedder, classifier
