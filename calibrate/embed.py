"""Embed outcome prompts offline, exactly as the server does (same
conversation_text, same encoder), with a persistent per-text cache so
train/evaluate/threshold runs on the same data embed it once."""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policies.features import conversation_text
from router.embedding.encoders import Encoder, cache_dir, make_encoder


class EmbeddingCache:
    """text sha256 -> float32 vector, in one sqlite file per encoder id."""

    def __init__(self, encoder_id: str, root: Path | None = None) -> None:
        root = root or cache_dir() / "embeddings"
        root.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(encoder_id.encode()).hexdigest()[:16]
        self._db = sqlite3.connect(str(root / f"{name}.sqlite"), timeout=60)
        self._db.execute("create table if not exists emb (k text primary key, v blob)")

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            q = f"select k, v from emb where k in ({','.join('?' * len(chunk))})"
            for k, v in self._db.execute(q, chunk):
                out[k] = np.frombuffer(v, dtype=np.float32)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._db:
            self._db.executemany(
                "insert or replace into emb values (?, ?)",
                [(k, np.asarray(v, np.float32).tobytes()) for k, v in items.items()],
            )

    def close(self) -> None:
        self._db.close()


def embed_texts(
    texts: Sequence[str],
    encoder: Encoder | None = None,
    *,
    kind: str = "auto",
    batch_size: int = 32,
    use_cache: bool = True,
    progress: bool = True,
) -> np.ndarray:
    from tqdm import tqdm

    encoder = encoder or make_encoder(kind)
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    cache = EmbeddingCache(encoder.id) if use_cache else None
    found = cache.get_many(list(dict.fromkeys(keys))) if cache else {}
    todo = list(dict.fromkeys(k for k in keys if k not in found))
    by_key = dict(zip(keys, texts))
    # Sort by length so batches pad little.
    todo.sort(key=lambda k: len(by_key[k]))
    with tqdm(total=len(todo), unit="prompt", desc="embedding", disable=not progress or not todo, file=sys.stderr) as bar:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            vecs = encoder.encode([by_key[k] for k in chunk])
            new = dict(zip(chunk, vecs))
            found.update(new)
            if cache:
                cache.put_many(new)
            bar.update(len(chunk))
    if cache:
        cache.close()
    out = np.zeros((len(texts), encoder.dim), np.float32)
    for i, k in enumerate(keys):
        out[i] = found[k]
    return out


def embed_prompts(prompts: Sequence[Any], **kw: Any) -> np.ndarray:
    from policies.features import as_messages

    return embed_texts([conversation_text(as_messages(p)) for p in prompts], **kw)
