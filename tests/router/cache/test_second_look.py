"""The semantic cache's second look (router/cache/second_look.py), on the in-process store
and on a real Redis: a candidate found on the routing vector is served only when the second
encoder agrees; an entry without its text, or a failing check, is a miss, never an error.
The second encoder here is a strict stand-in (a fixed vector per text; unknown text raises),
so what reaches it is checked too: the query's text and the stored text, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from router.cache import ResponseCache, build_cache
from router.cache.second_look import TEXT_CHARS, SecondLook
from router.config import CacheSettings
from tests.router.cache_helpers import chat, completion, near, unit


class TableEncoder:
    """MiniLM's place: each text's vector from a table; a text not in it is a test bug."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.seen: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen.append(list(texts))
        return np.stack([self.vectors[t] for t in texts])


Factory = Callable[..., ResponseCache]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    caches: list[ResponseCache] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def factory(encoder: Any, **kw: Any) -> ResponseCache:
        cache = build_cache(CacheSettings(redis_url=url, timeout_ms=1000, semantic_threshold=0.85, **kw))
        cache.second_look = SecondLook(0.95, encoder_factory=lambda: encoder)
        caches.append(cache)
        return cache

    yield factory
    for c in caches:
        await c.close()


async def test_served_only_when_the_second_encoder_agrees(make: Factory) -> None:
    rng = np.random.default_rng(3)
    m = unit(rng)
    enc = TableEncoder({"the question": m, "the question, rephrased": near(m, 0.97, rng), "the question, renamed": near(m, 0.90, rng)})
    cache = make(enc)
    v = unit(rng)
    await cache.put(chat("the question"), v, completion("cached"), None, "fast")
    hit = await cache.get(chat("the question, rephrased"), near(v, 0.88, rng))
    assert hit is not None and hit.kind == "semantic" and abs(hit.similarity - 0.88) < 1e-3  # the routing vector's cosine
    assert enc.seen[-1] == ["the question, rephrased", "the question"]  # the query first, then the stored text
    # routing vectors close enough, but the second encoder says another question: a miss
    assert await cache.get(chat("the question, renamed"), near(v, 0.99, rng)) is None
    assert cache.second_look is not None
    assert cache.second_look.stats == {"checked": 2, "confirmed": 1, "refused": 1, "failed": 0}
    info = await cache.ready()
    assert info["second_look"]["refused"] == 1


async def test_below_the_candidate_threshold_nothing_is_checked(make: Factory) -> None:
    rng = np.random.default_rng(4)
    enc = TableEncoder({})
    cache = make(enc)
    v = unit(rng)
    await cache.put(chat("a"), v, completion("x"), None, "fast")
    assert await cache.get(chat("b"), near(v, 0.80, rng)) is None
    assert enc.seen == []  # no candidate, no second encoder pass


async def test_a_failing_check_is_a_miss(make: Factory) -> None:
    rng = np.random.default_rng(5)
    cache = make(TableEncoder({}))  # every text unknown: encode raises
    v = unit(rng)
    await cache.put(chat("stored"), v, completion("x"), None, "fast")
    assert await cache.get(chat("asked"), near(v, 0.99, rng)) is None
    assert cache.second_look is not None and cache.second_look.stats["failed"] == 1
    # the exact path does not need the check
    assert (await cache.get(chat("stored"), v)) is not None


async def test_an_entry_stored_without_its_text_is_not_served(make: Factory) -> None:
    rng = np.random.default_rng(6)
    enc = TableEncoder({"asked": unit(rng)})
    cache = make(enc)
    check, cache.second_look = cache.second_look, None  # stored while the check was off
    v = unit(rng)
    await cache.put(chat("stored"), v, completion("x"), None, "fast")
    cache.second_look = check
    assert await cache.get(chat("asked"), near(v, 0.99, rng)) is None


async def test_the_stored_text_is_bounded(make: Factory) -> None:
    rng = np.random.default_rng(8)
    long = "word " * 10_000
    m = unit(rng)
    enc = TableEncoder({long[:TEXT_CHARS]: m})
    cache = make(enc)
    v = unit(rng)
    await cache.put(chat(long), v, completion("x"), None, "fast")
    hit = await cache.get(chat(long + "!"), near(v, 0.99, rng))
    assert hit is not None  # both texts reached the check cut to TEXT_CHARS (the table knows only that)
    assert all(len(t) <= TEXT_CHARS for batch in enc.seen for t in batch)

