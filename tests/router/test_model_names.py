"""The model names agents send (issue 22): `routes:` patterns, most specific first, the
pattern in the decision record; embeddings for a chat alias; a model's
max_output_tokens (clamp by default, said in a header, or refuse); limits.max_tokens'
clamp; the end-user id as the operator lets it reach the upstream."""

from __future__ import annotations

from typing import Any

import pytest

from router import config
from router.settings.aliases import match, ordered_patterns, route_key, specificity
from router.upstreams import user_field
from router.access.auth import KeyStore
from router.access.limits import Limiter
from router.access.middleware import middleware
from router.config import ApiKey
from tests.router.test_app import CHAT, assert_openai_error, make, settings

DEBUG = {"x-thinkgate-debug": "1"}
MODELS = {
    "fast": {"provider": "fake", "model": "fast-model"},
    "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True},
}
ROUTES = {
    "auto": {},
    "*": {"pin": "fast"},
    "claude-*": {"pin": "reasoning"},
    "claude-haiku-*": {"pin": "fast"},
    "gpt-5*": {"pin": "reasoning"},
}


def test_most_specific_pattern_wins_whatever_the_order():
    keys = list(ROUTES)
    assert match(keys, "auto") == "auto"  # exact first
    assert match(keys, "claude-opus-5-5") == "claude-*"
    assert match(keys, "claude-haiku-4-5") == "claude-haiku-*"
    assert match(keys, "gpt-5.1-codex") == "gpt-5*"
    assert match(keys, "gemini-2.5-pro") == "*"
    assert match(keys, "Claude-opus") == "*"  # case-sensitive, as model ids are
    assert match(["auto", "claude-*"], "gemini-x") is None
    assert ordered_patterns(keys) == ["claude-haiku-*", "claude-*", "gpt-5*", "*"]
    assert specificity("claude-[ab]?-*") == 8  # "claude-" and "-"
    # ties go to the earlier key
    assert match(["a*", "*b"], "ab") == "a*" and match(["*b", "a*"], "ab") == "*b"


def test_route_key_resolves_as_the_pipeline_does():
    s = config.from_dict({"models": MODELS, "routes": ROUTES})
    assert route_key(s.routes, s.models, "claude-x") == "claude-*"
    assert route_key(s.routes, s.models, "fast") is None  # a configured model named directly: pinned
    assert route_key(s.routes, s.models, "reasoning-model") is None


async def test_pattern_routes_serve_and_are_recorded():
    client, ups = make(settings(routes=ROUTES))
    for name, upstream, pattern in (
        ("claude-opus-5-5", "reasoning", "claude-*"),
        ("claude-haiku-4-5", "fast", "claude-haiku-*"),
        ("gemini-2.5-pro", "fast", "*"),
        ("auto", "fast", None),
    ):
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": name}, headers=DEBUG)
        assert r.status_code == 200, r.text
        d = r.json()["thinkgate"]
        assert d["alias"] == name and d["alias_pattern"] == pattern and d["upstream"] == upstream, d
    # patterns serve names; /v1/models lists names a client can send, not patterns
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert "auto" in ids and not any("*" in i for i in ids)
    # the Messages front end (and count_tokens) takes the same names
    msg = {"model": "claude-opus-5-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    assert (await client.post("/v1/messages", json=msg)).status_code == 200
    assert (await client.post("/v1/messages/count_tokens", json={k: v for k, v in msg.items() if k != "max_tokens"})).status_code == 200


async def test_without_a_matching_pattern_the_name_is_still_a_404():
    client, _ = make(settings(routes={"auto": {}, "claude-*": {}}))
    assert_openai_error(await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-5"}), 404, "model")


async def test_a_key_allowed_a_pattern_may_use_the_names_it_serves():
    s = settings(routes={"auto": {}, "claude-*": {}})
    keys = KeyStore([ApiKey(key="sk-a", aliases=["claude-*"])])
    client, _ = make(s, middleware=middleware(keys, Limiter(s.limits)))
    h = {"x-api-key": "sk-a"}
    msg = {"model": "claude-x", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
    assert (await client.post("/v1/messages", json=msg, headers=h)).status_code == 200
    assert (await client.post("/v1/messages/count_tokens", json={k: v for k, v in msg.items() if k != "max_tokens"}, headers=h)).status_code == 200
    assert (await client.post("/v1/chat/completions", json={**CHAT, "model": "claude-x"}, headers=h)).status_code == 200
    assert_openai_error(await client.post("/v1/chat/completions", json=CHAT, headers=h), 403, "model")


def test_embedded_default_serves_the_agents_names():
    s = config.embedded_default()
    for name in ("claude-opus-5-5", "claude-haiku-4-5", "gpt-5.1-codex", "gemini-2.5-pro"):
        assert route_key(s.routes, s.models, name) is not None, name
    assert route_key(s.routes, s.models, "no-such-model") is None  # a typo stays a 404
    assert all(ms.max_output_tokens for ms in s.models.values())


# -- max tokens -------------------------------------------------------------------------


async def test_limits_max_tokens_clamps_by_default_and_says_so():
    client, ups = make(settings(limits={"max_tokens": 1000}))
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 128000}, headers=DEBUG)
    assert r.status_code == 200, r.text
    assert ups["fast"].calls[-1]["max_tokens"] == 1000
    assert r.headers["x-thinkgate-clamped"] == "max_tokens 128000 -> 1000 (limits.max_tokens)"
    assert r.json()["thinkgate"]["clamped"] == r.headers["x-thinkgate-clamped"]
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_completion_tokens": 999})
    assert "x-thinkgate-clamped" not in r.headers and ups["fast"].calls[-1]["max_completion_tokens"] == 999


async def test_limits_max_tokens_refuses_when_told():
    client, ups = make(settings(limits={"max_tokens": 1000, "over_max_tokens": "refuse"}))
    err = assert_openai_error(await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 1001}), 400, "max_tokens")
    assert "1000" in err["message"] and not ups["fast"].calls
    r = await client.post("/v1/messages", json={"model": "auto", "max_tokens": 1001, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def _capped(mode: str = "clamp") -> config.Settings:
    models = {
        "fast": {"provider": "fake", "model": "fast-model", "max_output_tokens": 500, "over_max_output": mode},
        "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True, "max_output_tokens": 2000},
    }
    return settings(models=models)


async def test_model_max_output_tokens_clamps_per_route():
    client, ups = make(_capped())
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 1500}, headers=DEBUG)
    assert ups["fast"].calls[-1]["max_tokens"] == 500
    assert r.headers["x-thinkgate-clamped"] == "max_tokens 1500 -> 500 (models.fast.max_output_tokens)"
    # the reasoning model's own limit is larger: the same ask passes whole there
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "pinned", "max_tokens": 1500})
    assert ups["reasoning"].calls[-1]["max_tokens"] == 1500 and "x-thinkgate-clamped" not in r.headers
    # both steps recorded: the gateway's limit, then the model's
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10**6})
    assert r.headers["x-thinkgate-clamped"] == (
        "max_tokens 1000000 -> 32768 (limits.max_tokens); max_tokens 32768 -> 500 (models.fast.max_output_tokens)"
    )
    # streaming: the header goes out with the stream
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 900, "stream": True})
    assert r.status_code == 200 and r.headers["x-thinkgate-clamped"].endswith("-> 500 (models.fast.max_output_tokens)")


async def test_model_max_output_tokens_refuses_when_told():
    client, ups = make(_capped("refuse"))
    err = assert_openai_error(await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 501}), 400, "max_tokens")
    assert "500" in err["message"] and not ups["fast"].calls
    assert (await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 500})).status_code == 200


# -- the end-user id --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hashed", "as_is", "drop"])
async def test_user_reaches_the_upstream_only_as_configured(mode: str):
    client, ups = make(settings(server={"max_body_bytes": 4096, "upstream_user": mode, "upstream_user_key": "k1"}))
    await client.post("/v1/chat/completions", json={**CHAT, "user": "alice@example.com"})
    msg = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}], "metadata": {"user_id": "alice@example.com"}}
    await client.post("/v1/messages", json=msg)
    for body in ups["fast"].calls[-2:]:
        if mode == "drop":
            assert "user" not in body
        elif mode == "as_is":
            assert body["user"] == "alice@example.com"
        else:
            assert body["user"] == user_field.hashed("alice@example.com", "k1") != user_field.hashed("alice@example.com", "k2")
            assert "alice" not in body["user"]


def test_user_field_default_is_hashed():
    assert config.from_dict({"models": MODELS}).server.upstream_user == "hashed"
    body: dict[str, Any] = {"user": 5}
    user_field.apply(body, "hashed", "k")
    assert "user" not in body  # not a string: not sent rather than sent as something else


async def test_embeddings_answer_a_chat_alias_with_the_configured_model():
    from router.embedding.batcher import fake_embedder
    from tests.router.api.test_embeddings import _client, _settings

    async with _client(_settings(), fake_embedder()) as c:
        r = await c.post("/v1/embeddings", json={"model": "auto", "input": "hello"})
        assert r.status_code == 200, r.text
        assert len(r.json()["data"][0]["embedding"]) == 384
        # a name that is neither an embedding model nor a chat alias is still a 404
        r = await c.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
        assert r.status_code == 404
    patterned = _settings(embeddings={"models": {"text-embedding-*": {"provider": "local"}}})
    async with _client(patterned, fake_embedder()) as c:
        assert (await c.post("/v1/embeddings", json={"model": "text-embedding-3-large", "input": "x"})).status_code == 200

