"""Cache behaviour, run against both backends: the embedded MemoryStore and a
real redis-server (tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from router.cache import ResponseCache, build_cache
from router.config import CacheSettings
from router.types import CacheControl
from tests.router.cache_helpers import OptIn, chat, completion, near, streamed, unit

Factory = Callable[..., ResponseCache]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    caches: list[ResponseCache] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def factory(**kw: Any) -> ResponseCache:
        kw.setdefault("timeout_ms", 1000)  # behaviour, not timing: a shared CI box may stall
        cache = build_cache(CacheSettings(redis_url=url, **kw))
        caches.append(cache)
        return cache

    yield factory
    for c in caches:
        await c.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


async def test_exact_hit_and_miss(make: Factory) -> None:
    cache = make()
    assert (await cache.ready())["ok"]
    req = chat("What is 2+2?")
    assert await cache.get(req, None) is None
    await cache.put(req, None, completion("4"), None, "fast")
    hit = await cache.get(chat("What is 2+2?"), None)
    assert hit is not None and hit.kind == "exact" and hit.similarity is None
    assert hit.response["choices"][0]["message"]["content"] == "4"
    assert hit.route == "fast" and 0 <= hit.age_s < 5
    assert await cache.get(chat("What is 2+3?"), None) is None
    # anything that changes the answer changes the key
    assert await cache.get(chat("What is 2+2?", max_tokens=5), None) is None
    assert await cache.get(chat("What is 2+2?", alias="reasoning"), None) is None
    sys_req = chat("What is 2+2?", history=[{"role": "system", "content": "Answer in French."}])
    assert await cache.get(sys_req, None) is None
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {}}}]
    assert await cache.get(chat("What is 2+2?", tools=tools), None) is None
    # ...and what does not, does not: stream flag, user, text-part form of the content
    assert await cache.get(chat("What is 2+2?", stream=True, user="u1"), None) is not None
    parts = chat("x")
    parts.messages[-1]["content"] = [{"type": "text", "text": "What is 2+2?"}]
    assert await cache.get(parts, None) is not None


async def test_semantic_hit_above_threshold_only(make: Factory, rng: np.random.Generator) -> None:
    cache = make(semantic_threshold=0.95)
    v = unit(rng)
    await cache.put(chat("How do I reverse a list in Python?"), v, completion("lst[::-1]"), None, "fast")
    hit = await cache.get(chat("how to reverse a python list"), near(v, 0.97, rng))
    assert hit is not None and hit.kind == "semantic"
    assert hit.similarity == pytest.approx(0.97, abs=1e-4)
    assert hit.response["choices"][0]["message"]["content"] == "lst[::-1]"
    assert await cache.get(chat("how to sort a python list"), near(v, 0.93, rng)) is None
    assert cache.needs_embedding(chat("q"))
    # the pipeline's second call skips the exact lookup it already made
    hit = await cache.get(chat("how to reverse a python list"), near(v, 0.97, rng), exact=False)
    assert hit is not None and hit.kind == "semantic"
    assert (await cache.get(chat("How do I reverse a list in Python?"), v, exact=False)).kind == "semantic"  # type: ignore[union-attr]


async def test_tenant_isolation(make: Factory, rng: np.random.Generator) -> None:
    cache = make()
    v = unit(rng)
    await cache.put(chat("secret plan?", tenant="acme"), v, completion("acme's answer"), None, "fast")
    assert await cache.get(chat("secret plan?", tenant="globex"), None) is None
    assert await cache.get(chat("secret plan?", tenant="globex"), v) is None
    assert await cache.get(chat("secret plan?", tenant="acme"), v) is not None


async def test_conversation_context_isolation(make: Factory, rng: np.random.Generator) -> None:
    cache = make()
    conv_a = [
        {"role": "user", "content": "How do I sort an array in JavaScript?"},
        {"role": "assistant", "content": "arr.sort((a, b) => a - b)"},
    ]
    conv_b = [
        {"role": "user", "content": "How do I read a file in JavaScript?"},
        {"role": "assistant", "content": "fs.readFileSync(path)"},
    ]
    v = unit(rng)  # the follow-ups embed alike: only the context tells them apart
    await cache.put(chat("and in Python?", history=conv_a), v, completion("sorted(arr)"), None, "fast")
    assert await cache.get(chat("and in Python?", history=conv_b), None) is None
    assert await cache.get(chat("and in Python?", history=conv_b), v) is None
    assert await cache.get(chat("and in python??", history=conv_b), near(v, 0.99, rng)) is None
    # the same conversation still hits, exactly and semantically
    assert (await cache.get(chat("and in Python?", history=conv_a), v)).kind == "exact"  # type: ignore[union-attr]
    hit = await cache.get(chat("and in python??", history=conv_a), near(v, 0.99, rng))
    assert hit is not None and hit.kind == "semantic"
    assert hit.response["choices"][0]["message"]["content"] == "sorted(arr)"


async def test_streamed_chunks_replayed_identically_with_reasoning(make: Factory, rng: np.random.Generator) -> None:
    cache = make()
    chunks = await streamed("The answer is 42.", reasoning="Let me think. 6 times 7.")
    response = completion("The answer is 42.", reasoning="Let me think. 6 times 7.")
    v = unit(rng)
    req = chat("6*7?", stream=True)
    await cache.put(req, v, response, chunks, "reasoning")
    hit = await cache.get(chat("6*7?", stream=True), v)
    assert hit is not None and hit.kind == "exact"
    assert hit.chunks == chunks
    assert hit.response == response
    assert hit.response["choices"][0]["message"]["reasoning_content"] == "Let me think. 6 times 7."
    # a paraphrase stating the same numbers (another number is another question: keys.numbers_of)
    sem = await cache.get(chat("what is 6 times 7?", stream=True), near(v, 0.98, rng))
    assert sem is not None and sem.chunks == chunks


async def test_large_stream_is_compressed_and_intact(make: Factory) -> None:
    cache = make()
    text = " ".join(f"word{i}" for i in range(3000))
    chunks = await streamed(text, reasoning=text)
    await cache.put(chat("long"), None, completion(text, reasoning=text), chunks, "reasoning")
    hit = await cache.get(chat("long"), None)
    assert hit is not None and hit.chunks == chunks and len(hit.chunks) > 6000


async def test_ttl_expiry(make: Factory, rng: np.random.Generator) -> None:
    cache = make(ttl_s=1)
    v = unit(rng)
    await cache.put(chat("short-lived"), v, completion("x"), None, "fast")
    assert await cache.get(chat("short-lived"), None) is not None
    await asyncio.sleep(1.2)
    assert await cache.get(chat("short-lived"), None) is None
    assert await cache.get(chat("short lived"), near(v, 0.99, rng)) is None


async def test_ttl_per_route(make: Factory) -> None:
    cache = make(ttl_per_route={"reasoning": 0, "fast": 60})
    await cache.put(chat("a"), None, completion("x"), None, "reasoning")
    await cache.put(chat("b"), None, completion("y"), None, "fast")
    assert await cache.get(chat("a"), None) is None
    hit = await cache.get(chat("b"), None)
    assert hit is not None
    assert cache.ttl("fast", "auto") == 60 and cache.ttl("other", "auto") == 3600


async def test_no_cache_no_store_max_age(make: Factory) -> None:
    cache = make()
    await cache.put(chat("q", cc=CacheControl(no_store=True)), None, completion("x"), None, "fast")
    assert await cache.get(chat("q"), None) is None
    await cache.put(chat("q"), None, completion("x"), None, "fast")
    assert await cache.get(chat("q", cc=CacheControl(no_cache=True)), None) is None
    assert await cache.get(chat("q", cc=CacheControl(max_age=60)), None) is not None
    assert await cache.get(chat("q", cc=CacheControl(max_age=0)), None) is None
    await asyncio.sleep(1.1)
    assert await cache.get(chat("q", cc=CacheControl(max_age=1)), None) is None
    assert await cache.get(chat("q"), None) is not None
    assert not cache.needs_embedding(chat("q", cc=CacheControl(no_cache=True, no_store=True)))


async def test_only_deterministic_unless_opted_in(make: Factory) -> None:
    cache = make()
    await cache.put(chat("poem", temperature=0.8), None, completion("roses"), None, "fast")
    assert await cache.get(chat("poem", temperature=0.8), None) is None
    body = {"temperature": 0.8}
    await cache.put(chat("poem", cc=OptIn(), **body), None, completion("roses"), None, "fast")
    assert await cache.get(chat("poem", cc=OptIn(), **body), None) is not None
    assert await cache.get(chat("poem", **body), None) is None  # a sampling client wants a fresh sample
    free = make(deterministic_only=False, namespace="free")
    await free.put(chat("poem", temperature=0.8), None, completion("roses"), None, "fast")
    assert await free.get(chat("poem", temperature=0.8), None) is not None


async def test_incomplete_response_not_stored(make: Factory) -> None:
    cache = make()
    await cache.put(chat("q"), None, completion("partial", finish=None), None, "fast")
    assert await cache.get(chat("q"), None) is None
    await cache.put(chat("q"), None, {"error": {"message": "x"}}, None, "fast")
    assert await cache.get(chat("q"), None) is None


async def test_invalidate_by_tenant_and_alias(make: Factory, rng: np.random.Generator) -> None:
    cache = make()
    v = unit(rng)
    for tenant, alias in [("t1", "auto"), ("t1", "fast"), ("t2", "auto"), ("t:2*", "auto")]:
        await cache.put(chat("q", tenant=tenant, alias=alias), v, completion(tenant + alias), None, "fast")
    assert await cache.invalidate("t1", None) == 2
    assert await cache.get(chat("q", tenant="t1"), v) is None
    assert await cache.get(chat("q", tenant="t1", alias="fast"), v) is None
    assert await cache.get(chat("q", tenant="t2"), v) is not None
    assert await cache.invalidate(None, "auto") == 2  # glob characters in names are literal
    assert await cache.get(chat("q", tenant="t:2*"), near(v, 0.99, rng)) is None
    assert await cache.invalidate(None, None) == 0


async def test_max_entries_bound(make: Factory) -> None:
    cache = make(max_entries=5)
    for i in range(8):
        await cache.put(chat(f"q{i}"), None, completion(str(i)), None, "fast")
    hits = [await cache.get(chat(f"q{i}"), None) for i in range(8)]
    assert sum(h is not None for h in hits) == 5
    assert hits[0] is None and hits[7] is not None


async def test_disabled_cache_is_inert() -> None:
    cache = build_cache(CacheSettings(enabled=False))
    await cache.put(chat("q"), None, completion("x"), None, "fast")
    assert await cache.get(chat("q"), None) is None
    assert not cache.needs_embedding(chat("q"))
    assert (await cache.ready())["backend"] == "off"
    assert await cache.invalidate(None, None) == 0
    await cache.close()
