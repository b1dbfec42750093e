"""One encoder pass per request serves everything that reads a vector (issue 28):
the classifier, the semantic cache and the decision log all get the same vector,
from one forward pass, through the real AsyncEmbedder."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import numpy as np

from router import config
from router.app import create_app
from router.cache.response_cache import ResponseCache, build_cache
from router.embedding.batcher import AsyncEmbedder
from router.embedding.encoders import HashEncoder
from router.upstreams.fake import FakeReply, FakeUpstream


class SeenVector:
    """Reads the routing vector like a trained artifact, and keeps what it read."""

    threshold = 0.5
    meta: dict[str, Any] = {}

    def __init__(self) -> None:
        self.vectors: list[np.ndarray] = []
        self.threads: list[str] = []

    def predict(self, messages: list[dict[str, Any]], vector: Any = None) -> float:
        assert vector is not None
        self.vectors.append(np.asarray(vector))
        self.threads.append(threading.current_thread().name)
        return 0.9 if "hard" in str(messages[-1]["content"]) else 0.1


class SeenCache(ResponseCache):
    def __init__(self, inner: ResponseCache) -> None:
        super().__init__(inner.settings, inner.store)
        self.looked_up: list[np.ndarray] = []

    async def get(self, req: Any, embedding: Any, *, exact: bool = True) -> Any:
        if embedding is not None:
            self.looked_up.append(np.asarray(embedding))
        return await super().get(req, embedding, exact=exact)


async def test_one_pass_serves_classifier_cache_and_log():
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "f"}, "reasoning": {"provider": "fake", "model": "r", "reasoning": True}},
        "routes": {"auto": {}},
        "classifier": {"embedder": "hash", "artifact": None},
        "cache": {"enabled": True, "semantic": True},
        "decisions": {"store_embedding": True},
    })
    ups = {"fast": FakeUpstream("fast", "f", lambda b: FakeReply("fast")), "reasoning": FakeUpstream("reasoning", "r", lambda b: FakeReply("deep"))}
    encoder = HashEncoder()
    embedder = AsyncEmbedder(encoder)
    clf = SeenVector()
    cache = SeenCache(build_cache(s.cache))
    app = create_app(s, upstreams=ups, embedder=embedder, classifier=clf, cache=cache)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as client:
        r = await client.post("/v1/chat/completions", headers={"x-thinkgate-debug": "1"}, json={
            "model": "auto", "temperature": 0, "messages": [{"role": "user", "content": "a hard question about primes"}]})
    assert r.status_code == 200 and r.headers["x-thinkgate-route"] == "reasoning"
    assert encoder.forward_calls == 1 and embedder.batches == 1  # one pass for all three
    assert len(clf.vectors) == 1 and len(cache.looked_up) == 1
    # the classifier ran once, in the embedding worker's job: no second handoff to another thread
    assert clf.threads == [t for t in clf.threads if t.startswith("thinkgate-embed")] and len(clf.threads) == 1
    logged = np.asarray(r.json()["thinkgate"]["embedding"])
    np.testing.assert_array_equal(cache.looked_up[0], clf.vectors[0])  # the very vector the classifier read
    np.testing.assert_allclose(logged, clf.vectors[0], atol=1e-5)  # the log keeps it (rounded to 5 places)
    embedder.close()


def test_static_is_the_default_and_the_cache_follows_it():
    s = config.from_dict({"models": {"fast": {"provider": "fake", "model": "f"}}, "routes": {"auto": {"fast": "fast", "reasoning": "fast"}}})
    assert s.classifier.encoder == "static" and s.classifier.artifact == "static-default"
    # candidates on the static vector at 0.85, each confirmed by MiniLM at 0.95
    assert s.cache.semantic_check is True and s.cache.semantic_threshold == 0.85 and s.cache.semantic_check_threshold == 0.95
    alone = config.from_dict({"models": {"fast": {"provider": "fake", "model": "f"}}, "routes": {"auto": {"fast": "fast", "reasoning": "fast"}},
                              "cache": {"semantic_check": False}})
    assert alone.cache.semantic_check is False and alone.cache.semantic_threshold == 0.95
    m = config.from_dict({"models": {"fast": {"provider": "fake", "model": "f"}}, "routes": {"auto": {"fast": "fast", "reasoning": "fast"}},
                          "classifier": {"encoder": "minilm"}})
    assert m.classifier.artifact == "default" and m.cache.semantic_threshold == 0.95 and m.cache.semantic_check is False
    # what the config names stays
    o = config.from_dict({"models": {"fast": {"provider": "fake", "model": "f"}}, "routes": {"auto": {"fast": "fast", "reasoning": "fast"}},
                          "classifier": {"encoder": "minilm", "artifact": "mine"}, "cache": {"semantic_threshold": 0.9}})
    assert o.classifier.artifact == "mine" and o.cache.semantic_threshold == 0.9
