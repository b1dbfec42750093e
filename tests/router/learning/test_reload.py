"""Hot reload of the classifier artifact through the admin route, in process:
a good artifact is swapped in, every bad one is refused with its reason while
the old one keeps serving, and requests racing a reload never fail."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import numpy as np
import pytest

from policies.difficulty import MODELS_DIR
from router import config
from router.app import create_app
from router.embedding.batcher import fake_embedder
from router.learning import admin
from router.learning.slot import ClassifierSlot, artifact_version
from router.types import Caller
from router.upstreams.fake import FakeUpstream
from tests.router.learning.helpers import write_artifact

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}


def make(tmp_path):
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "f"}, "reasoning": {"provider": "fake", "model": "r", "reasoning": True}},
        "selfref": {"enabled": False}, "cache": {"enabled": False},
    })  # fmt: skip
    art = write_artifact(tmp_path / "live", intercept=-5.0, threshold=0.5)  # P ~ 0.007: fast
    embedder = fake_embedder()
    slot = ClassifierSlot.load(str(art), embedder.dim)
    ups = {"fast": FakeUpstream("fast", "f"), "reasoning": FakeUpstream("reasoning", "r")}
    app = create_app(s, upstreams=ups, embedder=embedder, classifier=slot, routes=admin.routes(slot))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), slot, art


async def test_reload_swaps_the_artifact_and_the_header_names_it(tmp_path):
    client, slot, art = make(tmp_path)
    r = await client.post("/v1/chat/completions", json=CHAT)
    old = r.headers["x-thinkgate-router"]
    assert old == slot.current.version and r.headers["x-thinkgate-route"] == "fast"
    write_artifact(art, intercept=5.0, threshold=0.5, created="2026-12-01T09:00:00Z")  # retrained in place
    rr = await client.post("/admin/router/reload")
    assert rr.status_code == 200, rr.text
    out = rr.json()
    assert out["previous"] == old and out["artifact"]["version"] != old and out["artifact"]["trained_at"] == "2026-12-01T09:00:00Z"
    assert out["artifact"]["version"] == artifact_version(art) and out["reload_ms"] >= 0
    r2 = await client.post("/v1/chat/completions", json=CHAT)
    assert r2.headers["x-thinkgate-router"] == out["artifact"]["version"] and r2.headers["x-thinkgate-route"] == "reasoning"
    other = write_artifact(tmp_path / "other", intercept=-5.0)
    rr = await client.post("/admin/router/reload", json={"artifact": str(other)})
    assert rr.status_code == 200 and rr.json()["artifact"]["path"] == str(other)
    state = (await client.get("/admin/router")).json()
    assert state["reloads"] == 2 and state["refused"] == 0


def _missing(tmp_path, good):
    return tmp_path / "nope"


def _corrupt_meta(tmp_path, good):
    (good / "meta.json").write_text("{not json")
    return good


def _feature_version(tmp_path, good):
    meta = json.loads((good / "meta.json").read_text())
    meta["feature_version"] = "conv-v0+cheap-v1"
    (good / "meta.json").write_text(json.dumps(meta))
    return good


def _wide(tmp_path, good):
    dst = tmp_path / "wide"
    shutil.copytree(MODELS_DIR / "default", dst)  # 2688 values: the hash embedder gives 384
    return dst


def _truncated_weights(tmp_path, good):
    data = (good / "weights.npz").read_bytes()
    (good / "weights.npz").write_bytes(data[: len(data) // 2])
    return good


def _nan_weights(tmp_path, good):
    with np.load(good / "weights.npz") as z:
        w = {k: z[k] for k in z.files}
    w["intercept"] = np.asarray(np.nan)
    np.savez(good / "weights.npz", **w)
    return good


@pytest.mark.parametrize(
    "spoil, says",
    [
        (_missing, "no classifier artifact"),
        (_corrupt_meta, "not valid JSON"),
        (_feature_version, "feature set"),
        (_wide, "embedding values"),
        (_truncated_weights, "cannot"),
        (_nan_weights, "non-finite"),
    ],
)
async def test_a_bad_artifact_is_refused_and_the_old_one_keeps_serving(tmp_path, spoil, says):
    client, slot, art = make(tmp_path)
    before = slot.current.version
    bad = spoil(tmp_path, write_artifact(tmp_path / "candidate", intercept=5.0))
    rr = await client.post("/admin/router/reload", json={"artifact": str(bad)})
    assert rr.status_code == 422, rr.text
    err = rr.json()["error"]
    assert err["code"] == "artifact_invalid" and says in err["message"] and before in err["message"]
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.headers["x-thinkgate-router"] == before and r.headers["x-thinkgate-route"] == "fast"
    assert slot.refused == 1 and says in slot.state()["last_error"]


async def test_reload_needs_an_admin_and_a_sane_body(tmp_path):
    client, slot, _ = make(tmp_path)
    app = client._transport.app  # type: ignore[attr-defined]

    async def as_user(scope, receive, send):
        scope.setdefault("state", {})["caller"] = Caller(tenant="t", admin=False)
        await app(scope, receive, send)

    user = httpx.AsyncClient(transport=httpx.ASGITransport(app=as_user), base_url="http://tg")
    r = await user.post("/admin/router/reload")
    assert r.status_code == 403 and r.json()["error"]["message"]
    for body in (b"[1]", b"{bad", json.dumps({"artifact": 3}).encode()):
        r = await client.post("/admin/router/reload", content=body)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


async def test_requests_racing_reloads_never_fail_and_each_uses_one_artifact(tmp_path):
    client, slot, art = make(tmp_path)
    a = slot.current.version
    b_dir = write_artifact(tmp_path / "b", intercept=5.0)
    b = artifact_version(b_dir)
    seen: list[tuple[str, str]] = []
    stop = asyncio.Event()

    async def hammer() -> None:
        while not stop.is_set():
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200
            seen.append((r.headers["x-thinkgate-router"], r.headers["x-thinkgate-route"]))
            await asyncio.sleep(0.002)  # in process, a memoised embedding never yields: let the reloads in

    async def flip(times: int) -> None:
        # reload back and forth while five clients keep sending; swap again only once a
        # request was served by the new artifact (in process a reload need not yield, so
        # without this every request could land on one side)
        try:
            for n in range(times):
                target, version = (b_dir, b) if n % 2 == 0 else (art, a)
                assert (await client.post("/admin/router/reload", json={"artifact": str(target)})).status_code == 200
                start = len(seen)
                while all(v != version for v, _ in seen[start:]):
                    await asyncio.sleep(0.001)
        finally:
            stop.set()

    hammers = asyncio.gather(*(hammer() for _ in range(5)))
    await asyncio.wait_for(asyncio.gather(flip(6), hammers), timeout=60)
    assert len(seen) >= 6
    # the route always matches the artifact named in the header: no request mixed the two
    assert all((v, route) in ((a, "fast"), (b, "reasoning")) for v, route in seen)
    assert {v for v, _ in seen} == {a, b}
