import json
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from router import errors
from router.access.auth import AuthMiddleware, KeyStore, check_alias, key_id, parse_env
from router.config import ApiKey, AuthSettings
from router.types import Caller

USER_KEY = "sk-user-4f1c2a9e77d0b3"
ADMIN_KEY = "sk-admin-9b8c7d6e5f4a3b"
NARROW_KEY = "sk-narrow-0a1b2c3d4e5f"
SECRETS = (USER_KEY, ADMIN_KEY, NARROW_KEY, "sk-wrong-zzzzzzzz")


async def whoami(request: Request) -> JSONResponse:
    c: Caller = request.scope["state"]["caller"]
    return JSONResponse({"tenant": c.tenant, "key_id": c.key_id, "admin": c.admin, "aliases": sorted(c.aliases or [])})


async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    caller: Caller = request.scope["state"]["caller"]
    try:
        check_alias(caller, body.get("model", ""))
    except errors.ThinkgateError as e:
        return JSONResponse(e.body(), status_code=e.status)
    return JSONResponse({"ok": True, "tenant": caller.tenant})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def sse(request: Request) -> StreamingResponse:
    async def gen():
        for i in range(3):
            yield f"data: {i}\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream")


def make_app(store: KeyStore) -> AuthMiddleware:
    inner = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/whoami", whoami),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/stream", sse),
            Route("/dashboard", whoami),
            Route("/dashboard/api/recent", whoami),
            Route("/metrics", whoami),
            Route("/admin/reload", whoami, methods=["POST"]),
        ]
    )
    return AuthMiddleware(inner, store)


def store() -> KeyStore:
    return KeyStore(
        [
            ApiKey(key=USER_KEY, tenant="acme"),
            ApiKey(key=ADMIN_KEY, tenant="ops", admin=True),
            ApiKey(key=NARROW_KEY, tenant="narrow", aliases=["fast"]),
        ]
    )


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CASES = [
    # (name, method, path, headers, json, status)
    ("no key", "POST", "/v1/chat/completions", {}, {"model": "auto"}, 401),
    ("wrong key", "POST", "/v1/chat/completions", auth("sk-wrong-zzzzzzzz"), {"model": "auto"}, 401),
    ("basic scheme", "POST", "/v1/chat/completions", {"Authorization": f"Basic {USER_KEY}"}, {"model": "auto"}, 401),
    ("empty bearer", "POST", "/v1/chat/completions", {"Authorization": "Bearer "}, {"model": "auto"}, 401),
    ("key prefix", "POST", "/v1/chat/completions", auth(USER_KEY[:-1]), {"model": "auto"}, 401),
    ("user ok", "POST", "/v1/chat/completions", auth(USER_KEY), {"model": "auto"}, 200),
    ("key without alias", "POST", "/v1/chat/completions", auth(NARROW_KEY), {"model": "auto"}, 403),
    ("key with alias", "POST", "/v1/chat/completions", auth(NARROW_KEY), {"model": "fast"}, 200),
    ("healthz open", "GET", "/healthz", {}, None, 200),
    ("healthz wrong key", "GET", "/healthz", auth("sk-wrong-zzzzzzzz"), None, 200),
    ("models need key", "GET", "/v1/whoami", {}, None, 401),
    ("non-admin dashboard", "GET", "/dashboard", auth(USER_KEY), None, 403),
    ("non-admin dashboard api", "GET", "/dashboard/api/recent", auth(USER_KEY), None, 403),
    ("non-admin metrics", "GET", "/metrics", auth(USER_KEY), None, 403),
    ("non-admin admin", "POST", "/admin/reload", auth(USER_KEY), None, 403),
    ("no key dashboard", "GET", "/dashboard", {}, None, 401),
    ("admin dashboard", "GET", "/dashboard", auth(ADMIN_KEY), None, 200),
    ("admin metrics", "GET", "/metrics", auth(ADMIN_KEY), None, 200),
    ("admin chat", "POST", "/v1/chat/completions", auth(ADMIN_KEY), {"model": "auto"}, 200),
]


@pytest.mark.parametrize("name,method,path,headers,body,status", CASES, ids=[c[0] for c in CASES])
async def test_auth_matrix(name, method, path, headers, body, status, caplog):
    caplog.set_level(logging.DEBUG)
    async with client(make_app(store())) as c:
        r = await c.request(method, path, headers=headers, json=body)
    assert r.status_code == status, r.text
    if status >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] in ("authentication_error", "permission_error")
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    for secret in SECRETS:
        assert secret not in r.text
        assert secret not in str(dict(r.headers))
        assert secret not in caplog.text


async def test_caller_is_set_from_key():
    async with client(make_app(store())) as c:
        r = await c.get("/v1/whoami", headers=auth(NARROW_KEY))
    assert r.json() == {"tenant": "narrow", "key_id": key_id(NARROW_KEY), "admin": False, "aliases": ["fast"]}
    assert len(r.json()["key_id"]) == 8 and r.json()["key_id"] not in NARROW_KEY


async def test_no_keys_means_default_admin_caller():
    async with client(make_app(KeyStore())) as c:
        r = await c.get("/dashboard")
    assert r.status_code == 200
    assert r.json() == {"tenant": "default", "key_id": None, "admin": True, "aliases": []}


async def test_streaming_passes_through_unbuffered():
    async with client(make_app(store())) as c:
        async with c.stream("GET", "/v1/stream", headers=auth(USER_KEY)) as r:
            parts = [p async for p in r.aiter_text()]
    assert "".join(parts) == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_keys_are_stored_hashed():
    s = store()
    for e in s._entries:
        assert all(secret.encode() not in e.digest for secret in SECRETS)
        assert SECRETS[0] not in repr(e)
    assert s.lookup(USER_KEY).tenant == "acme"
    assert s.lookup("sk-nope") is None
    assert USER_KEY not in repr(ApiKey(key=USER_KEY))


def test_env_keys_syntax():
    keys = parse_env(" sk-a , sk-b:acme, sk-c:ops:admin,")
    assert [(k.tenant, k.admin) for k in keys] == [("default", False), ("acme", False), ("ops", True)]
    s = KeyStore.from_settings(
        AuthSettings(keys=[ApiKey(key="sk-cfg", tenant="cfg")]), env={"THINKGATE_API_KEYS": "sk-a:t1"}
    )
    assert len(s) == 2 and s.lookup("sk-a").tenant == "t1" and s.lookup("sk-cfg").tenant == "cfg"
    assert not KeyStore.from_settings(AuthSettings(), env={}).enabled


def test_env_errors_never_quote_the_key():
    with pytest.raises(ValueError) as e:
        parse_env("sk-secret-value:t:superuser")
    assert "sk-secret-value" not in str(e.value)
    with pytest.raises(ValueError) as e:
        KeyStore([ApiKey(key="sk-dup-secret"), ApiKey(key="sk-dup-secret")])
    assert "sk-dup-secret" not in str(e.value)


def test_check_alias():
    check_alias(Caller(), "anything")
    check_alias(Caller(aliases=frozenset({"fast"})), "fast")
    with pytest.raises(errors.Forbidden):
        check_alias(Caller(aliases=frozenset({"fast"})), "auto")


# -- the whole app: keys never reach logs, decision records, the dashboard or errors ----------


async def test_app_keys_never_leak(caplog):
    from prometheus_client import CollectorRegistry

    from router import config
    from router.access.limits import Limiter
    from router.access.middleware import middleware
    from router.app import create_app
    from router.dashboard import routes as dashboard_routes
    from router.decisions.log import MemoryDecisionLog
    from router.decisions.metrics import Metrics
    from router.upstreams.fake import FakeUpstream, failing

    caplog.set_level(logging.DEBUG)
    env_key, provider_key = "sk-env-admin-77aa88bb99", "sk-provider-secret-123456"
    s = config.from_dict(
        {
            "models": {
                "fast": {"provider": "fake", "model": "fast-model", "api_key": provider_key},
                "reasoning": {
                    "provider": "fake",
                    "model": "reasoning-model",
                    "reasoning": True,
                    "api_key": provider_key,
                },
            },
            "routes": {"auto": {}, "fast": {"pin": "fast"}},
            "selfref": {"enabled": False},
            "auth": {
                "keys": [
                    {"key": USER_KEY, "tenant": "acme", "rpm": 1000},
                    {"key": NARROW_KEY, "tenant": "narrow", "aliases": ["fast"]},
                ]
            },
            "limits": {"tpm": 100000},
        }
    )
    keys = KeyStore.from_settings(s.auth, env={"THINKGATE_API_KEYS": f"{env_key}:ops:admin"})
    limiter = Limiter(s.limits)
    log_ = MemoryDecisionLog(s.decisions)
    metrics = Metrics(CollectorRegistry())
    reasoning = FakeUpstream(
        "reasoning",
        "reasoning-model",
        failing(errors.UpstreamAuth("upstream reasoning refused the credentials", upstream="reasoning")),
    )
    app = create_app(
        s,
        upstreams={"fast": FakeUpstream("fast", "fast-model"), "reasoning": reasoning},
        log_sink=log_,
        metrics=metrics,
        routes=dashboard_routes(log_, metrics, s),
        middleware=middleware(keys, limiter),
    )
    secrets = (*SECRETS, env_key, provider_key)
    seen: list[str] = []
    chat_body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
    async with client(app) as c:
        plan = [
            ("POST", "/v1/chat/completions", {}, chat_body, 401),
            ("POST", "/v1/chat/completions", auth("sk-wrong-zzzzzzzz"), chat_body, 401),
            ("POST", "/v1/chat/completions", auth(USER_KEY), chat_body, 200),
            ("POST", "/v1/chat/completions", {**auth(USER_KEY), "x-thinkgate-debug": "1"}, chat_body, 200),
            (
                "POST",
                "/v1/chat/completions",
                {**auth(USER_KEY), "x-thinkgate-debug": "1"},
                {**chat_body, "stream": True},
                200,
            ),
            ("POST", "/v1/chat/completions", auth(NARROW_KEY), chat_body, 403),
            ("POST", "/v1/chat/completions", auth(NARROW_KEY), {**chat_body, "model": "fast"}, 200),
            # the reasoning provider refuses our (provider) key: the client sees neither key
            (
                "POST",
                "/v1/chat/completions",
                {**auth(env_key), "x-thinkgate-force-route": "reasoning", "x-thinkgate-debug": "1"},
                chat_body,
                200,
            ),
            ("GET", "/v1/models", auth(NARROW_KEY), None, 200),
            ("GET", "/dashboard/api/decisions", auth(USER_KEY), None, 403),
            ("GET", "/dashboard/api/decisions", auth(env_key), None, 200),
            ("GET", "/dashboard/api/summary", auth(env_key), None, 200),
            ("GET", "/dashboard/api/export.jsonl", auth(env_key), None, 200),
            ("GET", "/metrics", auth(env_key), None, 200),
            ("GET", "/metrics", {}, None, 401),
            ("GET", "/readyz", auth(env_key), None, 200),
            ("GET", "/healthz", {}, None, 200),
        ]
        for method, path, headers, body, status in plan:
            r = await c.request(method, path, headers=headers, json=body)
            assert r.status_code == status, (path, headers.keys(), r.text)
            seen.append(r.text)
            seen.append(str(dict(r.headers)))
        await app.state.pipeline.drain()
    records = await log_.recent(1000)
    assert len(records) >= 5 and {r["tenant"] for r in records} >= {"acme", "narrow", "ops"}
    assert any(r.get("fallback_from") == "reasoning" for r in records)
    blob = "\n".join([*seen, json.dumps(records), caplog.text])
    for secret in secrets:
        assert secret not in blob, "key material leaked"
        assert secret[:12] not in blob


async def test_build_app_wires_the_guards():
    """`thinkgate serve`'s own assembly (router.build): keys from the env, limits, resilient upstreams."""
    from router import config
    from router.build import build_app
    from router.upstreams.resilient import ResilientUpstream

    s = config.from_dict(
        {
            "models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake", "reasoning": True}},
            "classifier": {"enabled": False},
            "selfref": {"enabled": False},
            "limits": {"breaker": {"failures": 2, "cooldown_s": 3}},
        }
    )
    app = build_app(s, env={"THINKGATE_API_KEYS": f"{USER_KEY}:acme,{ADMIN_KEY}:ops:admin"})
    ups = app.state.pipeline.upstreams
    assert all(isinstance(u, ResilientUpstream) for u in ups.values())
    assert ups["fast"].breaker.s.failures == 2  # limits.breaker reaches the breakers
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    async with client(app) as c:
        assert (await c.post("/v1/chat/completions", json=body)).status_code == 401
        assert (await c.post("/v1/chat/completions", json=body, headers=auth(USER_KEY))).status_code == 200
        assert (await c.get("/dashboard/api/decisions", headers=auth(USER_KEY))).status_code == 403
        assert (await c.get("/dashboard/api/decisions", headers=auth(ADMIN_KEY))).status_code == 200
        assert (await c.get("/healthz")).status_code == 200
