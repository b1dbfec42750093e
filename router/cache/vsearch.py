"""Redis-side vector search (RediSearch: Redis Stack, Redis 8): detection and
the FT.* commands the cache uses when the server has it.

Plain Redis 7 has no vector search; the cache then keeps vectors in a Redis
stream and searches an in-process index (router/cache/index.py). These helpers
build and parse commands only, so they are unit-tested without such a server.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from redis.exceptions import ResponseError

SEARCH_MODULES = frozenset({"search", "searchlight", "ft"})


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


def module_names(reply: Any) -> set[str]:
    """Names from a MODULE LIST reply, RESP2 (flat lists) or RESP3 (maps)."""
    names: set[str] = set()
    for mod in reply or []:
        if isinstance(mod, dict):
            fields = {_text(k): v for k, v in mod.items()}
        else:
            flat = list(mod)
            fields = {_text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}
        if "name" in fields:
            names.add(_text(fields["name"]).lower())
    return names


async def detect(client: Any) -> bool:
    """True when the server answers FT.* commands.

    MODULE LIST names the search module on Redis Stack; managed services often
    deny MODULE, and Redis 8 ships search built in, so FT._LIST is the fallback
    probe ("unknown command" on plain Redis). Connection errors propagate.
    """
    try:
        if module_names(await client.execute_command("MODULE", "LIST")) & SEARCH_MODULES:
            return True
    except ResponseError:
        pass
    try:
        await client.execute_command("FT._LIST")
    except ResponseError:
        return False
    return True


def create_args(index: str, prefix: str, dim: int) -> list[Any]:
    return [
        "FT.CREATE", index, "ON", "HASH", "PREFIX", "1", prefix,
        "SCHEMA",
        "s", "TAG",
        "c", "NUMERIC",
        "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", str(dim), "DISTANCE_METRIC", "COSINE",
    ]  # fmt: skip


def search_args(index: str, scope: str, vec: np.ndarray, k: int, min_created_ms: int) -> list[Any]:
    # scope is a hex digest, so it needs no TAG escaping
    query = f"(@s:{{{scope}}} @c:[{min_created_ms} +inf])=>[KNN {k} @v $B AS d]"
    blob = np.asarray(vec, np.float32).tobytes()
    return [
        "FT.SEARCH", index, query,
        "PARAMS", "2", "B", blob,
        "SORTBY", "d", "RETURN", "1", "d",
        "LIMIT", "0", str(k), "DIALECT", "2",
    ]  # fmt: skip


def parse_search(reply: Any) -> list[tuple[str, float]]:
    """[(redis key, cosine similarity)] from an FT.SEARCH reply (RESP2 or RESP3)."""
    out: list[tuple[str, float]] = []
    if isinstance(reply, dict):  # RESP3
        for doc in reply.get("results", reply.get(b"results", [])):
            doc = {_text(k): v for k, v in doc.items()}
            attrs = {_text(k): v for k, v in (doc.get("extra_attributes") or {}).items()}
            if "d" in attrs:
                out.append((_text(doc["id"]), 1.0 - float(_text(attrs["d"]))))
        return out
    items = list(reply or [])[1:]  # RESP2: total, key, [field, value, ...], key, ...
    for i in range(0, len(items) - 1, 2):
        fields = list(items[i + 1])
        attrs = {_text(fields[j]): fields[j + 1] for j in range(0, len(fields) - 1, 2)}
        if "d" in attrs:
            out.append((_text(items[i]), 1.0 - float(_text(attrs["d"]))))
    return out
