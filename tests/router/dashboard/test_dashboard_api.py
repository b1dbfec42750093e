from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from router.dashboard import PUBLIC_PATHS, routes
from router.dashboard.demo import sample_decisions
from router.decisions.log import MemoryDecisionLog
from router.decisions.metrics import Metrics
from router.types import Caller, Decision


class SetCaller:
    """Stands in for router.access.auth: puts a caller in scope["state"]."""

    def __init__(self, app: Any, caller: Caller | None) -> None:
        self.app, self.caller = app, caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.caller is not None and scope["type"] == "http":
            scope.setdefault("state", {})["caller"] = self.caller
        await self.app(scope, receive, send)


async def _app(n: int = 60, caller: Caller | None = None) -> tuple[Any, MemoryDecisionLog, Metrics, list[Decision]]:
    log, metrics = MemoryDecisionLog(), Metrics(CollectorRegistry())
    ds = sample_decisions(n)
    for d in ds:
        await log.append(d)
        metrics.observe(d)
    app = SetCaller(Starlette(routes=routes(log, metrics, None)), caller)
    return app, log, metrics, ds


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_page_and_assets_are_served_without_a_cdn() -> None:
    app, *_ = await _app(0)
    async with _client(app) as c:
        r = await c.get("/dashboard")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        html = r.text
        assert "/dashboard/static/dashboard.js" in html
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from a CDN
        js = await c.get("/dashboard/static/dashboard.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        assert "https://" not in js.text and "import " not in js.text
        assert (await c.get("/dashboard/static/dashboard.css")).status_code == 200
        missing = await c.get("/dashboard/static/../__init__.py")
        assert missing.status_code == 404
        assert (await c.get("/dashboard/static/x.js")).json()["error"]["code"] == "not_found"
    assert "/dashboard" in PUBLIC_PATHS


async def test_summary_matches_the_log() -> None:
    app, log, _, ds = await _app(80)
    async with _client(app) as c:
        s = (await c.get("/dashboard/api/summary")).json()
    assert s["total"] == 80
    assert sum(s["routes"].values()) == 80
    assert s["routes"]["cache"] == sum(1 for d in ds if d.route == "cache")
    assert s["escalation"]["escalated"] == sum(1 for d in ds if d.escalated)
    assert sum(s["difficulty"]["bins"]) == sum(1 for d in ds if d.difficulty is not None)
    assert s["difficulty"]["threshold"] == 0.55
    assert s["cost"]["actual"] == pytest.approx(sum(d.cost for d in ds))
    assert s["config"]["poll_ms"] == 2000
    assert s["log"]["backend"] == "memory"
    assert sorted(s["tenants"]) == sorted({d.tenant for d in ds})


async def test_summary_when_empty() -> None:
    app, *_ = await _app(0)
    async with _client(app) as c:
        s = (await c.get("/dashboard/api/summary")).json()
        assert s["total"] == 0 and s["timeline"]["buckets"] == []
        lst = (await c.get("/dashboard/api/decisions")).json()
        assert lst["data"] == [] and lst["count"] == 0


async def test_decisions_filters_and_limit() -> None:
    app, _, _, ds = await _app(120)
    async with _client(app) as c:
        lst = (await c.get("/dashboard/api/decisions", params={"limit": 10})).json()
        assert lst["count"] == 10 and [r["id"] for r in lst["data"]] == [d.id for d in ds[::-1][:10]]
        assert "embedding" not in lst["data"][0]
        for params, check in [
            ({"route": "fast"}, lambda d: d.route == "fast"),
            ({"tenant": "acme"}, lambda d: d.tenant == "acme"),
            ({"escalated": "true"}, lambda d: d.escalated),
            ({"escalated": "false", "route": "reasoning"}, lambda d: not d.escalated and d.route == "reasoning"),
            ({"cache": "hit"}, lambda d: d.cache in ("exact", "semantic")),
            ({"cache": "miss", "tenant": "globex"}, lambda d: d.cache == "miss" and d.tenant == "globex"),
        ]:
            got = (await c.get("/dashboard/api/decisions", params={**params, "limit": 1000})).json()
            assert got["count"] == sum(1 for d in ds if check(d)), params
            assert got["filters"] == {k: (v == "true" if k == "escalated" else v) for k, v in params.items()}


@pytest.mark.parametrize(
    "params,param",
    [({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"), ({"route": "slow"}, "route"), ({"cache": "x"}, "cache"), ({"escalated": "maybe"}, "escalated")],
)
async def test_bad_query_is_an_openai_error(params: dict[str, str], param: str) -> None:
    app, *_ = await _app(5)
    async with _client(app) as c:
        r = await c.get("/dashboard/api/decisions", params=params)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param


async def test_decision_detail_and_404() -> None:
    app, _, _, ds = await _app(10)
    async with _client(app) as c:
        r = await c.get(f"/dashboard/api/decisions/{ds[3].id}")
        assert r.status_code == 200 and r.json()["id"] == ds[3].id
        assert r.json()["tenant"] == ds[3].tenant
        r = await c.get("/dashboard/api/decisions/req-nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_export_is_jsonl_newest_first() -> None:
    app, _, _, ds = await _app(15)
    async with _client(app) as c:
        r = await c.get("/dashboard/api/export.jsonl", params={"route": "fast"})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["id"] for x in lines] == [d.id for d in ds[::-1] if d.route == "fast"]


async def test_metrics_endpoint_changes_with_traffic() -> None:
    app, log, metrics, ds = await _app(0)
    async with _client(app) as c:
        def total(text: str) -> float:
            return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "thinkgate_requests_total")

        before = await c.get("/metrics")
        assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
        assert total(before.text) == 0
        for d in sample_decisions(7):
            await log.append(d)
            metrics.observe(d)
        assert total((await c.get("/metrics")).text) == 7


@pytest.mark.parametrize(
    "path", ["/dashboard", "/dashboard/api/summary", "/dashboard/api/decisions", "/dashboard/api/decisions/x", "/dashboard/api/export.jsonl", "/metrics"]
)
async def test_non_admin_caller_is_refused(path: str) -> None:
    app, *_ = await _app(3, caller=Caller(tenant="acme", key_id="abcd1234", admin=False))
    async with _client(app) as c:
        r = await c.get(path)
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"


async def test_admin_caller_is_allowed() -> None:
    app, *_ = await _app(3, caller=Caller(tenant="ops", key_id="ffff0000", admin=True))
    async with _client(app) as c:
        assert (await c.get("/dashboard/api/summary")).json()["total"] == 3
        assert (await c.get("/metrics")).status_code == 200


async def test_metrics_can_be_mounted_separately() -> None:
    log = MemoryDecisionLog()
    rs = routes(log, Metrics(CollectorRegistry()), None, include_metrics=False)
    assert "/metrics" not in [r.path for r in rs]
