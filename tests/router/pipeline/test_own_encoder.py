"""A classifier on its own encoder (classifier.encoder: static) routes without the
pipeline's MiniLM pass, unless the semantic cache or the decision log needs that
vector: the CPU the static encoder saves is saved in serving too."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from router import config
from router.app import create_app
from router.cache.response_cache import build_cache
from router.upstreams.fake import FakeReply, FakeUpstream


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls = 0

    async def embed(self, messages: list[dict[str, Any]], then: Any = None) -> Any:
        self.calls += 1
        v = np.ones(384, dtype=np.float32) / np.sqrt(384)
        return v if then is None else (v, then(v))


class OwnEncoderClassifier:
    """Like router.embedding.static.StaticClassifier: reads the messages, not the vector."""

    threshold = 0.5
    reads_vector = False

    def predict(self, messages: list[dict[str, Any]], vector: Any = None) -> float:
        return 0.9 if "hard" in str(messages[-1]["content"]) else 0.1


class VectorClassifier(OwnEncoderClassifier):
    reads_vector = True

    def predict(self, messages: list[dict[str, Any]], vector: Any = None) -> float:
        assert vector is not None
        return super().predict(messages, vector)


def make(classifier: Any, **over: Any) -> tuple[httpx.AsyncClient, CountingEmbedder]:
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "f"}, "reasoning": {"provider": "fake", "model": "r", "reasoning": True}},
        "routes": {"auto": {}},
        "cache": {"enabled": False},
        **over,
    })
    ups = {"fast": FakeUpstream("fast", "f", lambda b: FakeReply("fast")), "reasoning": FakeUpstream("reasoning", "r", lambda b: FakeReply("deep"))}
    emb = CountingEmbedder()
    cache = build_cache(s.cache) if s.cache.enabled else None
    app = create_app(s, upstreams=ups, embedder=emb, classifier=classifier, cache=cache)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), emb


async def ask(client: httpx.AsyncClient, text: str) -> httpx.Response:
    return await client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": text}], "temperature": 0},
                             headers={"x-thinkgate-debug": "1"})


async def test_own_encoder_routes_without_the_embedding_pass():
    client, emb = make(OwnEncoderClassifier())
    hard, easy = await ask(client, "a hard one"), await ask(client, "easy")
    assert hard.headers["x-thinkgate-route"] == "reasoning" and easy.headers["x-thinkgate-route"] == "fast"
    assert hard.json()["thinkgate"]["reason"] == "classifier" and hard.json()["thinkgate"]["difficulty"] == 0.9
    assert emb.calls == 0


async def test_the_vector_is_still_computed_when_something_reads_it():
    client, emb = make(VectorClassifier())  # a MiniLM artifact
    assert (await ask(client, "a hard one")).headers["x-thinkgate-route"] == "reasoning"
    assert emb.calls == 1
    client, emb = make(OwnEncoderClassifier(), decisions={"store_embedding": True})  # the log keeps the embedding
    r = await ask(client, "a hard one")
    assert r.headers["x-thinkgate-route"] == "reasoning" and emb.calls == 1
    client, emb = make(OwnEncoderClassifier(), cache={"enabled": True, "semantic": True})  # the semantic cache compares it
    assert (await ask(client, "a hard one")).headers["x-thinkgate-route"] == "reasoning"
    assert emb.calls == 1
