"""P(needs reasoning) from a conversation's embedding and cheap features, and
the routing rule `p >= threshold -> reasoning`.

The artifact is a directory (models/NAME/) with `meta.json` and `weights.npz`
(plain arrays, no pickle): a linear scorer over [standardised embedding (the
first `embedding_dim` values of the routing vector: 384 = the sentence
embedding alone, 2688 = it and the six layer means; router/embedding/encoders.py),
weighted standardised cheap features] plus, in format 2, a linear scorer over
hashed word n-grams (policies.features.lexical_indices; a sparse dot product),
and a Platt map from score to a calibrated probability. Predicting is a dot
product: no scikit-learn at serving time. calibrate/artifact.py writes it."""

from __future__ import annotations

import json
import math
import site
import sys
from pathlib import Path
from typing import Any

import numpy as np

from policies.features import (
    CHEAP_FEATURE_NAMES,
    FEATURE_VERSION,
    LEXICAL_DIM,
    LEXICAL_VERSION,
    cheap_features,
    lexical_indices,
)

FORMAT = "thinkgate-difficulty/2"  # 2 = 1 + optional lexical weights (lex_coef, lex_bias)
# (embedding_dim 2688 = sentence embedding + layer means is also format 2: the
# scorer reads the first embedding_dim values of whatever routing vector it gets)
READABLE_FORMATS = ("thinkgate-difficulty/1", FORMAT)
EMBEDDER_ID = "sentence-transformers/all-MiniLM-L6-v2"  # = router.embedding.encoders.EMBEDDER_ID


def _models_dir() -> Path:
    """models/ beside the packages in a checkout (or the image's /app); in an installed
    wheel, where pyproject.toml's data-files put it: <prefix>/share/thinkgate/models."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "models").is_dir():
        return root / "models"
    for prefix in (sys.prefix, site.getuserbase()):
        installed = Path(prefix) / "share" / "thinkgate" / "models"
        if installed.is_dir():
            return installed
    return root / "models"


MODELS_DIR = _models_dir()


class ArtifactError(ValueError):
    """The artifact is missing, malformed, or was built for another embedder
    or feature set; the message says which and how to fix it."""


def resolve(name_or_path: str | Path) -> Path:
    """`default` -> models/default; anything else is a directory path."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if isinstance(name_or_path, str) and "/" not in name_or_path and (MODELS_DIR / name_or_path).is_dir():
        return MODELS_DIR / name_or_path
    raise ArtifactError(f"no classifier artifact at {name_or_path!r} (a directory with meta.json, or a name under {MODELS_DIR})")


def decide(p: float, threshold: float) -> str:
    """The routing policy: at or above the threshold the prompt goes to the reasoning route."""
    return "reasoning" if p >= threshold else "fast"


class DifficultyClassifier:
    def __init__(self, meta: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        self.meta = meta
        w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        # Fold standardisation into one weight vector per block:
        #   score = e.(coef_emb/emb_scale) + f.(feat_weight*coef_feat/feat_scale) + bias
        self._we = w["coef_emb"] / w["emb_scale"]
        self.embedding_dim = len(self._we)
        self._wf = float(w["feat_weight"]) * w["coef_feat"] / w["feat_scale"]
        self._bias = float(w["intercept"] - w["emb_mean"] @ self._we - w["feat_mean"] @ self._wf)
        self._feat_mean = w["feat_mean"]
        # Lexical part (format 2): score += sum(lex_coef[idx]) / sqrt(len(idx)) + lex_bias.
        # Its bias centres it on the training prompts, so without messages it adds ~0.
        self._wl = w["lex_coef"] if "lex_coef" in w else None
        self._lex_bias = float(w["lex_bias"]) if "lex_bias" in w else 0.0
        self._a = float(w["platt_a"])
        self._b = float(w["platt_b"])
        self.threshold = float(meta.get("threshold", 0.5))

    # -- loading ---------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, embedder_id: str = EMBEDDER_ID) -> DifficultyClassifier:
        d = resolve(path)
        try:
            meta = json.loads((d / "meta.json").read_text())
        except FileNotFoundError:
            raise ArtifactError(f"{d}: no meta.json — not a thinkgate classifier artifact") from None
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{d}/meta.json: not valid JSON ({e.msg})") from None
        check(meta, embedder_id=embedder_id, where=str(d))
        try:
            with np.load(d / "weights.npz") as z:
                weights = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{d}/weights.npz: cannot read ({e})") from None
        dim = int(meta.get("embedding_dim", 384))
        if weights.get("coef_emb", np.zeros(0)).shape != (dim,) or weights["coef_feat"].shape != (len(CHEAP_FEATURE_NAMES),):
            raise ArtifactError(f"{d}/weights.npz: weight shapes do not match meta.json")
        if "lex_coef" in weights and weights["lex_coef"].shape != (int(meta.get("lexical_dim", -1)),):
            raise ArtifactError(f"{d}/weights.npz: lexical weight shape does not match meta.json")
        return cls(meta, weights)

    def save(self, path: str | Path) -> None:  # pragma: no cover - the trainer writes artifacts
        raise NotImplementedError("use calibrate.artifact.write_artifact")

    # -- scoring ---------------------------------------------------------------

    def score(self, messages: list[dict[str, Any]], embedding: np.ndarray) -> float:
        """The raw ranking score (higher = more likely to need reasoning).
        Without messages (e.g. replaying stored embeddings) the cheap features
        are taken at their training means: an embedding-only estimate."""
        e = self._head(np.asarray(embedding, np.float64).reshape(-1))
        f = np.asarray(cheap_features(messages), np.float64) if messages else self._feat_mean
        return float(e @ self._we + f @ self._wf + self._bias + self._lexical(messages))

    def _head(self, e: np.ndarray) -> np.ndarray:
        if e.shape[-1] < self.embedding_dim:
            raise ArtifactError(
                f"the classifier reads {self.embedding_dim} embedding values but got {e.shape[-1]}: it was trained on "
                "sentence embedding + layer means (embedder onnx/torch), not on this embedder's vectors"
            )
        return e[..., : self.embedding_dim]

    def _lexical(self, messages: list[dict[str, Any]] | None) -> float:
        if self._wl is None or not messages:
            return 0.0
        idx = lexical_indices(messages)
        return float(self._wl[idx].sum(dtype=np.float64)) / math.sqrt(len(idx)) + self._lex_bias if idx else self._lex_bias

    def calibrate(self, score: float) -> float:
        z = self._a * score + self._b
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def predict(self, messages: list[dict[str, Any]], embedding: np.ndarray) -> float:
        """Calibrated P(needs reasoning): the probability that the strong
        (reasoning) model's answer is better than the fast model's."""
        return self.calibrate(self.score(messages, embedding))

    def predict_many(
        self, features: np.ndarray, embeddings: np.ndarray, messages: list[list[dict[str, Any]]] | None = None
    ) -> np.ndarray:
        """Batch predict; messages (one conversation per row) feed the lexical
        part, which is taken at its training mean (0) without them."""
        s = self._head(np.asarray(embeddings, np.float64)) @ self._we + np.asarray(features, np.float64) @ self._wf + self._bias
        if messages is not None:
            s = s + np.asarray([self._lexical(m) for m in messages])
        return 1.0 / (1.0 + np.exp(-(self._a * s + self._b)))

    def route(self, p: float, threshold: float | None = None) -> str:
        return decide(p, self.threshold if threshold is None else threshold)


def check(meta: dict[str, Any], *, embedder_id: str = EMBEDDER_ID, where: str = "artifact") -> None:
    """Refuse artifacts this code cannot serve correctly."""
    if meta.get("format") not in READABLE_FORMATS:
        raise ArtifactError(f"{where}: format {meta.get('format')!r}, this thinkgate reads {' or '.join(map(repr, READABLE_FORMATS))}")
    if meta.get("embedder") != embedder_id:
        raise ArtifactError(
            f"{where}: trained on embeddings from {meta.get('embedder')!r} but the router embeds with "
            f"{embedder_id!r}; retrain it (thinkgate calibrate train) for this embedder"
        )
    if meta.get("feature_version") != FEATURE_VERSION:
        raise ArtifactError(
            f"{where}: built for feature set {meta.get('feature_version')!r} but this thinkgate computes "
            f"{FEATURE_VERSION!r}; retrain it (thinkgate calibrate train --outcomes FILE --out DIR)"
        )
    if "lexical_version" in meta and (meta["lexical_version"], meta.get("lexical_dim")) != (LEXICAL_VERSION, LEXICAL_DIM):
        raise ArtifactError(
            f"{where}: built for lexical features {meta['lexical_version']!r} (dim {meta.get('lexical_dim')}) but this "
            f"thinkgate computes {LEXICAL_VERSION!r} (dim {LEXICAL_DIM}); retrain it (thinkgate calibrate train)"
        )
