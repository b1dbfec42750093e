"""Small artifacts and a scripted judge for the learning tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from policies.difficulty import EMBEDDER_ID, FORMAT
from policies.features import CHEAP_FEATURE_NAMES, FEATURE_VERSION
from router.upstreams.fake import FakeReply


def write_artifact(path: Path, *, dim: int = 384, intercept: float = 0.0, threshold: float = 0.5, created: str = "2026-12-01T00:00:00Z") -> Path:
    """A valid format-2 artifact with no lexical part: P = sigmoid(intercept) for a zero embedding."""
    path.mkdir(parents=True, exist_ok=True)
    nf = len(CHEAP_FEATURE_NAMES)
    rng = np.random.default_rng(0)
    np.savez(
        path / "weights.npz",
        coef_emb=rng.normal(size=dim) * 0.01, emb_mean=np.zeros(dim), emb_scale=np.ones(dim),
        coef_feat=np.zeros(nf), feat_mean=np.zeros(nf), feat_scale=np.ones(nf), feat_weight=np.asarray(1.0),
        intercept=np.asarray(intercept), platt_a=np.asarray(1.0), platt_b=np.asarray(0.0),
    )  # fmt: skip
    meta = {
        "format": FORMAT, "embedder": EMBEDDER_ID, "embedding_dim": dim, "feature_version": FEATURE_VERSION,
        "features": list(CHEAP_FEATURE_NAMES), "threshold": threshold, "created": created, "procedure": "test",
    }  # fmt: skip
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def judge_prefers(word: str) -> Any:
    """A judge handler that names whichever answer (A or B) contains `word`, else a tie."""

    def handler(body: dict[str, Any]) -> FakeReply:
        user = body["messages"][-1]["content"]
        a = re.search(r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End", user, re.S)
        b = re.search(r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End", user, re.S)
        assert a and b, "the judge was not shown two answers"
        in_a, in_b = word in a.group(1), word in b.group(1)
        return FakeReply("[[A]]" if in_a and not in_b else "[[B]]" if in_b and not in_a else "[[C]]")

    return handler
