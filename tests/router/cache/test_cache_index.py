"""Pure parts of the cache: keys, the in-process vector index, and the Redis
vector-search (FT.*) detection and command building."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from redis.exceptions import ResponseError

from router.cache import vsearch
from router.cache.index import EXACT_SCAN_MAX, VectorIndex, bit_bound
from router.cache.keys import is_deterministic, request_keys
from router.types import CacheControl, Controls, DeerControl
from tests.router.cache_helpers import chat, near, unit

# -- keys ----------------------------------------------------------------------------


def test_keys_scope_ignores_only_the_last_user_turn() -> None:
    hist = [{"role": "system", "content": "be brief"}]
    a, b = request_keys(chat("one", history=hist)), request_keys(chat("two", history=hist))
    assert a.exact != b.exact and a.scope == b.scope
    c = request_keys(chat("one", history=[{"role": "system", "content": "be verbose"}]))
    assert c.scope != a.scope
    assert request_keys(chat("one", tenant="x")).scope != request_keys(chat("one", tenant="y")).scope
    assert request_keys(chat("one", seed=3)).scope != request_keys(chat("one")).scope


def test_keys_include_output_changing_controls() -> None:
    base = chat("q")
    forced = chat("q")
    forced.controls = Controls(force_route="reasoning")
    deer_off = chat("q")
    deer_off.controls = Controls(deer=DeerControl(enabled=False))
    exacts = {request_keys(r).exact for r in (base, forced, deer_off)}
    assert len(exacts) == 3
    debug = chat("q")
    debug.controls = Controls(debug=True, cache=CacheControl(max_age=5))
    assert request_keys(debug).exact == request_keys(base).exact


def test_entry_key_hex_encodes_tenant_and_alias() -> None:
    k = request_keys(chat("q", tenant="a:b*", alias="auto"))
    t, a, digest = k.entry.split(":")
    assert bytes.fromhex(t) == b"a:b*" and bytes.fromhex(a) == b"auto" and digest == k.exact


def test_deterministic() -> None:
    assert is_deterministic(chat("q", temperature=0))
    assert is_deterministic(chat("q", temperature=0.0))
    assert not is_deterministic(chat("q", temperature=0.2))
    r = chat("q")
    del r.body["temperature"]
    assert not is_deterministic(r)  # OpenAI's default temperature is 1


# -- index ---------------------------------------------------------------------------


def test_bit_bound_is_monotone() -> None:
    assert bit_bound(0.99) < bit_bound(0.95) < bit_bound(0.8) < 192


@pytest.mark.parametrize("n", [50, EXACT_SCAN_MAX + 3000])
def test_index_finds_every_neighbour_above_threshold(n: int) -> None:
    rng = np.random.default_rng(n)
    idx = VectorIndex(dim=384, max_rows=n)
    base = rng.standard_normal((n, 384)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    for i in range(n):
        idx.add(f"k{i}", "s", base[i], expires=1e12, created=1.0)
    probes = rng.choice(n, min(n, 200), replace=False)
    for j, i in enumerate(probes):
        sim = 0.951 + 0.048 * (j / len(probes))
        got = idx.search("s", near(base[i], sim, rng), 0.95, now=0.0)
        assert got and got[0].key == f"k{i}" and got[0].similarity == pytest.approx(sim, abs=1e-4)
        assert not idx.search("s", near(base[i], 0.94, rng), 0.95, now=0.0)


@pytest.mark.parametrize("spread", [0.65, 0.1])
def test_index_clustered_data_recall(spread: float) -> None:
    # embeddings of real prompts are not isotropic: stress the bit pre-filter with clusters
    # (spread 0.65: topics, members ~0.7 alike; 0.1: near-duplicates, members ~0.99 alike)
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((20, 384)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    n = EXACT_SCAN_MAX + 4000
    noise = rng.standard_normal((n, 384)).astype(np.float32)
    base = centers[rng.integers(0, 20, n)] + spread * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    idx = VectorIndex(max_rows=n)
    for i in range(n):
        idx.add(f"k{i}", "s", base[i], expires=1e12, created=1.0)
    best_found = hits = 0
    for i in rng.choice(n, 100, replace=False):
        q = near(base[i], 0.97, rng)
        exact = base @ q
        got = idx.search("s", q, 0.95, now=0.0)
        hits += bool(got)
        best_found += bool(got) and got[0].similarity >= float(exact.max()) - 1e-5
        assert not got or got[0].similarity >= 0.95
    assert hits == 100
    assert best_found >= (99 if spread > 0.5 else 90)


def test_index_scopes_expiry_removal_and_bound() -> None:
    rng = np.random.default_rng(0)
    idx = VectorIndex(max_rows=3)
    v = unit(rng)
    idx.add("a", "s1", v, expires=100.0, created=1.0, tenant="t", alias="x")
    idx.add("b", "s2", v, expires=100.0, created=1.0, tenant="t", alias="y")
    assert [m.key for m in idx.search("s1", v, 0.9, now=0.0)] == ["a"]
    assert idx.search("s1", v, 0.9, now=200.0) == []  # expired
    assert idx.search("s1", v, 0.9, now=0.0, min_created=2.0) == []  # too old for max-age
    idx.add("c", "s1", v, expires=100.0, created=1.0)
    idx.add("d", "s1", v, expires=100.0, created=1.0)  # over the bound: "a" goes
    assert idx.created_of("a") is None and len(idx) == 3
    assert idx.remove("c") and not idx.remove("c")
    assert [m.key for m in idx.search("s1", v, 0.9, now=0.0)] == ["d"]
    assert idx.drop("t", "y") == 1 and idx.search("s2", v, 0.9, now=0.0) == []
    assert idx.sweep(now=1000.0) == 1 and len(idx) == 0 and idx.scopes == 0
    assert not idx.add("bad", "s", np.zeros(384, np.float32), expires=1.0, created=1.0)
    assert not idx.add("bad", "s", np.ones(12, np.float32), expires=1.0, created=1.0)


def test_index_compaction_keeps_rows_findable() -> None:
    rng = np.random.default_rng(9)
    idx = VectorIndex(max_rows=10_000)
    vs = [unit(rng) for _ in range(200)]
    for i, v in enumerate(vs):
        idx.add(f"k{i}", "s", v, expires=1e12, created=1.0)
    for i in range(0, 200, 3):
        idx.remove(f"k{i}")
    for i, v in enumerate(vs):
        got = idx.search("s", v, 0.99, now=0.0)
        assert [m.key for m in got] == ([] if i % 3 == 0 else [f"k{i}"])


# -- Redis vector search -----------------------------------------------------------------


class FakeClient:
    """Answers MODULE LIST / FT._LIST like the server kinds we meet."""

    def __init__(self, modules: Any = None, module_denied: bool = False, ft: bool = False) -> None:
        self.modules, self.module_denied, self.ft = modules or [], module_denied, ft
        self.calls: list[tuple[Any, ...]] = []

    async def execute_command(self, *args: Any) -> Any:
        self.calls.append(args)
        if args[:2] == ("MODULE", "LIST"):
            if self.module_denied:
                raise ResponseError("NOPERM this user has no permissions to run the 'module' command")
            return self.modules
        if args[0] == "FT._LIST":
            if not self.ft:
                raise ResponseError("unknown command 'FT._LIST', with args beginning with: ")
            return []
        raise AssertionError(args)


async def test_detect_plain_redis() -> None:
    assert not await vsearch.detect(FakeClient())


async def test_detect_redis_stack_resp2_and_resp3() -> None:
    resp2 = [[b"name", b"search", b"ver", 20812, b"path", b"/opt/redis-stack/lib/redisearch.so"]]
    assert await vsearch.detect(FakeClient(modules=resp2, ft=True))
    resp3 = [{b"name": b"ReJSON", b"ver": 20609}, {b"name": b"search", b"ver": 20812}]
    client = FakeClient(modules=resp3, ft=True)
    assert await vsearch.detect(client)
    assert client.calls == [("MODULE", "LIST")]  # no need to probe further


async def test_detect_when_module_list_is_denied_or_search_is_built_in() -> None:
    assert await vsearch.detect(FakeClient(module_denied=True, ft=True))  # managed service
    assert await vsearch.detect(FakeClient(modules=[], ft=True))  # Redis 8: search built in
    assert not await vsearch.detect(FakeClient(module_denied=True))
    assert not await vsearch.detect(FakeClient(modules=[[b"name", b"ReJSON"]]))


@pytest.mark.redis
async def test_detect_against_real_redis_7(redis_url: str) -> None:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    try:
        assert await vsearch.detect(client) is False
    finally:
        await client.aclose()


def test_ft_commands() -> None:
    create = vsearch.create_args("ns:cache:idx", "ns:cache:e:", 384)
    assert create[:7] == ["FT.CREATE", "ns:cache:idx", "ON", "HASH", "PREFIX", "1", "ns:cache:e:"]
    assert "VECTOR" in create and "384" in create and "COSINE" in create
    v = np.ones(4, np.float32)
    search = vsearch.search_args("ns:cache:idx", "ab12", v, 3, 1000)
    assert search[2] == "(@s:{ab12} @c:[1000 +inf])=>[KNN 3 @v $B AS d]"
    assert search[search.index("B") + 1] == v.tobytes()
    assert search[-2:] == ["DIALECT", "2"]


def test_ft_search_reply_parsing() -> None:
    resp2 = [2, b"ns:cache:e:k1", [b"d", b"0.02"], b"ns:cache:e:k2", [b"d", b"0.1"]]
    assert vsearch.parse_search(resp2) == [("ns:cache:e:k1", pytest.approx(0.98)), ("ns:cache:e:k2", pytest.approx(0.9))]
    resp3 = {"total_results": 1, "results": [{"id": "ns:cache:e:k1", "extra_attributes": {"d": "0.05"}, "values": []}]}
    assert vsearch.parse_search(resp3) == [("ns:cache:e:k1", pytest.approx(0.95))]
    assert vsearch.parse_search([0]) == []


def test_sweep_marks_expired_rows_and_compacts_lazily() -> None:
    rng = np.random.default_rng(11)
    idx = VectorIndex(max_rows=1000)
    vs = [unit(rng) for _ in range(100)]
    for i, v in enumerate(vs):
        idx.add(f"k{i}", "s", v, expires=10.0 if i < 40 else 100.0, created=1.0)
    assert idx.sweep(now=50.0) == 40 and len(idx) == 60
    assert idx._scopes["s"].n == 100  # marked, not rebuilt (40 dead of 100)
    assert idx.search("s", vs[5], 0.99, now=0.0) == []  # swept rows are gone even for an old clock
    assert [m.key for m in idx.search("s", vs[50], 0.99, now=50.0)] == ["k50"]
    for i in range(40, 50):
        idx.remove(f"k{i}")
    assert idx._scopes["s"].n == 50  # half dead: rebuilt with the 50 live rows
    assert [m.key for m in idx.search("s", vs[70], 0.99, now=50.0)] == ["k70"]
