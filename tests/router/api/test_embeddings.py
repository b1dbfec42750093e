"""POST /v1/embeddings: the local model (here the hashed stand-in behind the same
AsyncEmbedder the pipeline uses) and a remote OpenAI-compatible server (the loopback
fake server over real HTTP), input forms, base64, dimensions, errors, auth."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np

from router import config
from router.access.auth import KeyStore
from router.access.limits import Limiter
from router.access.middleware import middleware
from router.app import create_app
from router.config import ApiKey
from router.embedding.batcher import fake_embedder
from router.embedding.encoders import HashEncoder
from router.upstreams.fake import FakeUpstream
from router.upstreams.fake_server import FakeOpenAIServer


def _settings(embeddings: dict[str, Any] | None = None, **over: Any) -> config.Settings:
    data: dict[str, Any] = {
        "models": {
            "fast": {"provider": "fake", "model": "fast-model"},
            "reasoning": {"provider": "fake", "model": "r", "reasoning": True},
        },
        "selfref": {"enabled": False},
        "cache": {"enabled": False},
        **over,
    }
    if embeddings is not None:
        data["embeddings"] = embeddings
    return config.from_dict(data)


def _client(s: config.Settings, embedder: Any = None, **kw: Any) -> httpx.AsyncClient:
    ups = {"fast": FakeUpstream("fast", "fast-model"), "reasoning": FakeUpstream("reasoning", "r")}
    app = create_app(s, upstreams=ups, embedder=embedder, **kw)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")


def _err(r: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


async def test_local_model_single_and_list_input():
    emb = fake_embedder()
    async with _client(_settings(), emb) as c:
        r = await c.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "hello world"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
        [row] = body["data"]
        assert row["object"] == "embedding" and row["index"] == 0 and len(row["embedding"]) == 384
        want = HashEncoder().encode(["hello world"])[0]
        assert np.allclose(row["embedding"], want, atol=1e-6)
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0

        texts = ["a cat", "a dog", "a cat"]
        r = await c.post("/v1/embeddings", json={"model": "sentence-transformers/all-MiniLM-L6-v2", "input": texts})
        rows = r.json()["data"]
        assert [x["index"] for x in rows] == [0, 1, 2]
        assert rows[0]["embedding"] == rows[2]["embedding"] != rows[1]["embedding"]
        assert np.isclose(np.linalg.norm(rows[1]["embedding"]), 1.0, atol=1e-5)


async def test_local_base64_and_dimensions():
    async with _client(_settings(), fake_embedder()) as c:
        f = (await c.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x y"})).json()["data"][0][
            "embedding"
        ]
        r = await c.post(
            "/v1/embeddings",
            json={"model": "all-MiniLM-L6-v2", "input": "x y", "encoding_format": "base64", "dimensions": 384},
        )
        assert r.status_code == 200, r.text
        decoded = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
        assert np.allclose(decoded, f)
        err = _err(
            await c.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 256}),
            400,
            "dimensions",
        )
        assert "384" in err["message"]
        err = _err(
            await c.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": [[1, 2, 3]]}), 400, "input"
        )
        assert "token arrays" in err["message"]


async def test_bad_requests_are_clear_400s_and_404s():
    async with _client(_settings(), fake_embedder()) as c:
        m = "all-MiniLM-L6-v2"
        for body, param in [
            ({"input": "x"}, "model"),
            ({"model": m}, "input"),
            ({"model": m, "input": ""}, "input"),
            ({"model": m, "input": []}, "input"),
            ({"model": m, "input": ["ok", 3]}, "input"),
            ({"model": m, "input": {"a": 1}}, "input"),
            ({"model": m, "input": "x", "encoding_format": "int8"}, "encoding_format"),
            ({"model": m, "input": "x", "dimensions": 0}, "dimensions"),
            ({"model": m, "input": "x", "dimensions": True}, "dimensions"),
            ({"model": m, "input": "x", "whatever": 1}, "whatever"),
            ({"model": m, "input": ["x"] * 2049}, "input"),
        ]:
            _err(await c.post("/v1/embeddings", json=body), 400, param)
        _err(await c.post("/v1/embeddings", content=b"[1,", headers={"content-type": "application/json"}), 400)
        err = _err(await c.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}), 404, "model")
        assert err["code"] == "model_not_found" and "all-MiniLM-L6-v2" in err["message"]


async def test_local_model_without_a_pipeline_embedder_is_built_on_first_use():
    s = _settings(classifier={"enabled": False, "embedder": "hash"})
    async with _client(s, None) as c:
        r = await c.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": ["one", "two"]})
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) == 2


async def test_remote_openai_compatible_model_is_proxied():
    async with FakeOpenAIServer() as server:
        s = _settings({"models": {
            "text-embedding-3-small": {"provider": "openai", "model": "up-embed", "api_base": server.api_base, "dimensions": True},
            "fixed": {"provider": "openai", "model": "up-fixed", "api_base": server.api_base},
        }})  # fmt: skip
        async with _client(s) as c:
            r = await c.post(
                "/v1/embeddings",
                json={"model": "text-embedding-3-small", "input": ["a b", "c"], "dimensions": 4, "user": "u1"},
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model"] == "text-embedding-3-small"
            assert [len(x["embedding"]) for x in body["data"]] == [4, 4]
            assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
            r64 = await c.post(
                "/v1/embeddings",
                json={
                    "model": "text-embedding-3-small",
                    "input": ["a b", "c"],
                    "dimensions": 4,
                    "encoding_format": "base64",
                },
            )
            decoded = np.frombuffer(base64.b64decode(r64.json()["data"][1]["embedding"]), dtype="<f4")
            assert np.allclose(decoded, body["data"][1]["embedding"])
            # token arrays go to a remote server as they are
            assert (await c.post("/v1/embeddings", json={"model": "fixed", "input": [[1, 2], [3]]})).status_code == 200
            _err(
                await c.post("/v1/embeddings", json={"model": "fixed", "input": "x", "dimensions": 4}),
                400,
                "dimensions",
            )
        assert server.stats.by_path["/v1/embeddings"] == 3


async def test_remote_failure_is_a_clean_upstream_error():
    async with FakeOpenAIServer() as server:
        url = server.api_base
    s = _settings({"models": {"e": {"provider": "openai", "model": "m", "api_base": url, "timeout": 2}}})
    async with _client(s) as c:  # the server is gone: connection refused
        err = _err(await c.post("/v1/embeddings", json={"model": "e", "input": "x"}), 503)
        assert err["code"] == "upstream_unavailable"


async def test_x_api_key_and_allowed_aliases_apply():
    s = _settings()
    keys = KeyStore([ApiKey(key="sk-emb", aliases=["auto"]), ApiKey(key="sk-all")])
    async with _client(s, fake_embedder(), middleware=middleware(keys, Limiter(s.limits))) as c:
        body = {"model": "all-MiniLM-L6-v2", "input": "x"}
        assert (await c.post("/v1/embeddings", json=body)).status_code == 401
        assert (await c.post("/v1/embeddings", json=body, headers={"x-api-key": "sk-all"})).status_code == 200
        _err(await c.post("/v1/embeddings", json=body, headers={"x-api-key": "sk-emb"}), 403)
