"""Reload honest (issue 27): the reply and /admin/router give the threshold each route
uses now and where it comes from, warn when a configured route threshold overrides the
artifact's, and the requests after the reload use exactly that threshold. A relative
artifact path in the body is refused, naming the gateway's working directory."""

from __future__ import annotations

import httpx

from router import config
from router.app import create_app
from router.embedding.batcher import fake_embedder
from router.learning import admin
from router.learning.slot import ClassifierSlot
from router.upstreams.fake import FakeUpstream
from tests.router.learning.helpers import write_artifact

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}


def make(tmp_path, routes):
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "f"}, "reasoning": {"provider": "fake", "model": "r", "reasoning": True}},
        "routes": routes, "selfref": {"enabled": False}, "cache": {"enabled": False},
    })  # fmt: skip
    art = write_artifact(tmp_path / "live", intercept=0.0, threshold=0.3)  # P = 0.5 for every prompt
    embedder = fake_embedder()
    slot = ClassifierSlot.load(str(art), embedder.dim)
    ups = {"fast": FakeUpstream("fast", "f"), "reasoning": FakeUpstream("reasoning", "r")}
    app = create_app(s, upstreams=ups, embedder=embedder, classifier=slot, routes=admin.routes(slot, s.routes))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), art


async def test_a_configured_route_threshold_wins_and_the_reload_says_so(tmp_path):
    client, art = make(tmp_path, {"auto": {"threshold": 0.9}, "strict": {"threshold": 0.3}, "open": {}, "fast": {"pin": "fast"}})
    new = write_artifact(tmp_path / "new", intercept=0.0, threshold=0.2)
    rr = await client.post("/admin/router/reload", json={"artifact": str(new)})
    assert rr.status_code == 200, rr.text
    out = rr.json()
    assert out["artifact"]["threshold"] == 0.2
    assert out["routes"]["auto"] == {"threshold": 0.9, "source": "route", "artifact_threshold": 0.2}
    assert out["routes"]["open"] == {"threshold": 0.2, "source": "artifact", "artifact_threshold": 0.2}
    assert "fast" not in out["routes"]  # pinned: no classifier
    assert len(out["warnings"]) == 2 and "routes.auto.threshold 0.9 overrides the artifact's 0.2" in out["warnings"][0]
    assert "remove routes.auto.threshold" in out["warnings"][0]
    state = (await client.get("/admin/router")).json()
    assert state["routes"] == out["routes"] and state["warnings"] == out["warnings"]
    # the requests use exactly what the reply said: P = 0.5 is below 0.9, above 0.2
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert float(r.headers["x-thinkgate-threshold"]) == 0.9 and r.headers["x-thinkgate-route"] == "fast"
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "open"})
    assert float(r.headers["x-thinkgate-threshold"]) == 0.2 and r.headers["x-thinkgate-route"] == "reasoning"


async def test_without_a_route_threshold_the_artifact_applies_and_nothing_warns(tmp_path):
    client, art = make(tmp_path, {"auto": {}})
    out = (await client.post("/admin/router/reload")).json()
    assert out["routes"]["auto"]["source"] == "artifact" and out["warnings"] == []


async def test_a_relative_artifact_path_is_refused_with_the_working_directory(tmp_path):
    client, art = make(tmp_path, {"auto": {}})
    for rel in ("models/mine", "./mine", "../elsewhere/art"):
        rr = await client.post("/admin/router/reload", json={"artifact": rel})
        assert rr.status_code == 400, rr.text
        err = rr.json()["error"]
        assert err["code"] == "artifact_path_relative" and "working directory" in err["message"]
