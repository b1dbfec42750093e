"""The classifier in use, swappable while serving.

`ClassifierSlot.current` is one immutable `Loaded` (classifier + version); a
request reads it once (`snapshot`) and routes with that reference to the end,
so a reload mid-request never mixes two artifacts, and rebinding one attribute
is atomic under the GIL. A reload loads and checks the new artifact off the
event loop, then swaps; any problem (missing, corrupt, another feature set or
embedder, an embedding wider than the encoder gives, weights that do not score)
raises `ArtifactError` with the reason and leaves the old artifact serving."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("thinkgate.learning")


@dataclass(frozen=True)
class Loaded:
    classifier: Any  # policies.difficulty.DifficultyClassifier
    version: str  # "<dir name>@<sha256 of meta.json + weights.npz, 12 hex>"
    path: str
    trained_at: str | None
    loaded_at: float

    def info(self) -> dict[str, Any]:
        meta = getattr(self.classifier, "meta", {}) or {}
        data = meta.get("training_data") or {}
        return {
            "version": self.version, "path": self.path, "trained_at": self.trained_at, "loaded_at": self.loaded_at,
            "procedure": meta.get("procedure"), "threshold": getattr(self.classifier, "threshold", None),
            "embedding_dim": getattr(self.classifier, "embedding_dim", None), "training_n": data.get("n"),
        }  # fmt: skip


def artifact_version(path: str | Path) -> str:
    from policies.difficulty import resolve

    d = resolve(path)
    h = hashlib.sha256()
    for name in ("meta.json", "weights.npz"):
        try:
            h.update((d / name).read_bytes())
        except OSError:
            pass  # the loader reports the missing file with its own message
    return f"{d.name}@{h.hexdigest()[:12]}"


def load_checked(path: str | Path, embedding_dim: int | None, embedder_id: str | None = None) -> Loaded:
    """Load and validate an artifact completely before anything may serve with it.
    `embedder_id`: the encoder family it must be trained on (default MiniLM's)."""
    from policies.difficulty import ArtifactError, DifficultyClassifier, resolve

    version = artifact_version(path)  # hashed first: the version names exactly the bytes loaded
    clf = DifficultyClassifier.load(path, **({"embedder_id": embedder_id} if embedder_id else {}))
    if embedding_dim is not None and clf.embedding_dim > embedding_dim:
        raise ArtifactError(
            f"{path}: the classifier reads {clf.embedding_dim} embedding values but the running embedder gives "
            f"{embedding_dim}; retrain it on this embedder"
        )
    # a trial prediction: weights that load but cannot score (NaN, inf) are refused here, not on a request
    trial = ([{"role": "user", "content": "What is 2 + 2?"}], np.zeros(max(clf.embedding_dim, embedding_dim or 0), np.float32))
    # the raw score too: calibrate() maps a NaN score to probability 0, which would look fine
    if not (np.isfinite(clf.score(*trial)) and np.isfinite(clf.predict(*trial))):
        raise ArtifactError(f"{path}: the classifier's weights give a non-finite probability; the artifact is corrupt")
    meta = clf.meta
    return Loaded(clf, version, str(resolve(path)), meta.get("created") or meta.get("trained_at"), time.time())


class ClassifierSlot:
    def __init__(self, loaded: Loaded, *, embedding_dim: int | None, default_path: str) -> None:
        self.current = loaded
        self.embedding_dim = embedding_dim
        self.default_path = default_path
        # a reload must be trained on the encoder the serving one was (static or MiniLM)
        self.embedder_id: str | None = (getattr(loaded.classifier, "meta", None) or {}).get("embedder")
        self.reloads = 0
        self.refused = 0
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, path: str, embedding_dim: int | None) -> ClassifierSlot:
        return cls(load_checked(path, embedding_dim), embedding_dim=embedding_dim, default_path=path)

    @classmethod
    def around(cls, classifier: Any, path: str, embedding_dim: int | None) -> ClassifierSlot:
        """A slot holding a classifier start-up already loaded from `path`."""
        from policies.difficulty import resolve

        meta = classifier.meta
        loaded = Loaded(classifier, artifact_version(path), str(resolve(path)), meta.get("created"), time.time())
        return cls(loaded, embedding_dim=embedding_dim, default_path=path)

    async def reload(self, path: str | None = None) -> dict[str, Any]:
        """Swap in the artifact at `path` (default: the configured one, re-read from disk)."""
        from policies.difficulty import ArtifactError

        target = path or self.default_path
        async with self._lock:  # one reload at a time; requests never wait on it
            t0 = time.perf_counter()
            try:
                new = await asyncio.to_thread(load_checked, target, self.embedding_dim, self.embedder_id)
            except ArtifactError as e:
                self.refused += 1
                self.last_error = str(e)
                log.warning("artifact reload refused, still serving %s: %s", self.current.version, e)
                raise
            except Exception as e:  # anything else the loader trips on is a bad artifact too
                self.refused += 1
                self.last_error = f"{target}: cannot load ({type(e).__name__}: {e})"
                log.warning("artifact reload refused, still serving %s: %s", self.current.version, self.last_error)
                raise ArtifactError(self.last_error) from e
            old, self.current = self.current, new
            self.reloads += 1
            self.last_error = None
            ms = (time.perf_counter() - t0) * 1000
            log.info("classifier artifact %s -> %s (%.0f ms)", old.version, new.version, ms)
            return {"artifact": new.info(), "previous": old.version, "reload_ms": round(ms, 1)}

    def state(self) -> dict[str, Any]:
        return {**self.current.info(), "reloads": self.reloads, "refused": self.refused, "last_error": self.last_error}


def snapshot(classifier: Any) -> tuple[Any, str | None]:
    """(classifier, version) to route one request with: a slot's current artifact,
    or a plain classifier as given (tests, no reload)."""
    if isinstance(classifier, ClassifierSlot):
        cur = classifier.current
        return cur.classifier, cur.version
    return classifier, None
