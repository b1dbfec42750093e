"""The learning loop through a real `thinkgate serve` process: shadow sampling
with loopback fake upstreams and a fake judge, hot reload under load, a bad
artifact refused, SIGHUP on a real process."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
from pathlib import Path

import httpx
import pytest

from router.learning.slot import artifact_version
from router.upstreams.fake_server import FakeOpenAIServer, Faults
from router.upstreams.llamacpp import free_port
from tests.router.learning.helpers import write_artifact
from router.learning.testing import config, start, stop

pytestmark = pytest.mark.slow
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is six times seven?"}]}


def outcomes(tmp: Path) -> list[dict]:
    p = tmp / "outcomes.jsonl"
    return [json.loads(ln) for ln in p.read_text().splitlines()] if p.exists() else []


async def until(pred, timeout: float = 15.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.1)


async def test_shadow_sampling_through_serve_never_delays_the_client(tmp_path):
    # the route not taken answers after 2 s: a client that waited for it would see it
    async with (
        FakeOpenAIServer(words=4) as fast,
        FakeOpenAIServer(faults=Faults(delay_s=2.0), words=4) as reasoning,
        FakeOpenAIServer(reply="[[B]]") as judge,  # always "B": both orders cancel to a tie
    ):
        port = free_port()
        art = write_artifact(tmp_path / "art", threshold=0.99)  # everything routes fast
        proc = await start(config(tmp_path, port, fast.api_base, reasoning.api_base, judge.api_base, art, max_concurrent=64), port)
        try:
            lat = []
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                for i in range(16):
                    t = time.perf_counter()
                    if i % 2:
                        async with c.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                            body = "".join([x async for x in r.aiter_text()])
                        assert r.status_code == 200 and "[DONE]" in body
                    else:
                        r = await c.post("/v1/chat/completions", json=CHAT)
                        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "w0 w1 w2 w3"
                    lat.append(time.perf_counter() - t)
                    assert r.headers["x-thinkgate-route"] == "fast" and r.headers["x-thinkgate-router"] == artifact_version(art)
                # loose: no client waited for the 2 s shadow call (bench/learning.py measures the overhead)
                assert max(lat) < 2.0 and statistics.median(lat) < 1.0, lat
                await until(lambda: len(outcomes(tmp_path)) == 16, timeout=30)
                recs = outcomes(tmp_path)
                assert {r["source"] for r in recs} == {"shadow"} and all(r["fast"] == r["strong"] == 0.5 for r in recs)
                assert all(r["artifact"] == artifact_version(art) and r["route"] == "fast" for r in recs)
                assert reasoning.stats.by_path.get("/v1/chat/completions") == 16
                assert judge.stats.by_path.get("/v1/chat/completions") == 32
                dash = (await c.get("/dashboard/api/learning")).json()
                assert dash["outcomes"]["total"] == 16 and dash["learning"]["stats"]["recorded"] == 16
                q = dash["quality"]["current_artifact"]
                assert q["n"] == 16 and q["live_share"] == 0.0 and q["apgr"] is None  # ties: no gap to recover
                prom = (await c.get("/metrics")).text
                assert 'thinkgate_learning_jobs_total{event="recorded"} 16.0' in prom
                assert f'thinkgate_router_artifact_info{{version="{artifact_version(art)}"}} 1.0' in prom
        finally:
            stop(proc)


async def test_the_budget_caps_shadow_calls_and_failures_stay_in_the_background(tmp_path):
    async with (
        FakeOpenAIServer(words=4) as fast,
        FakeOpenAIServer(faults=Faults(fail_rate=1.0)) as reasoning,  # every shadow call fails
        FakeOpenAIServer(reply="[[A]]") as judge,
    ):
        port = free_port()
        art = write_artifact(tmp_path / "art", threshold=0.99)
        proc = await start(config(tmp_path, port, fast.api_base, reasoning.api_base, judge.api_base, art), port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                rs = await asyncio.gather(*(c.post("/v1/chat/completions", json=CHAT) for _ in range(20)))
                assert [r.status_code for r in rs] == [200] * 20
                assert all(r.json()["choices"][0]["message"]["content"] == "w0 w1 w2 w3" for r in rs)
                await asyncio.sleep(1.0)
                st = (await c.get("/dashboard/api/learning")).json()["learning"]["stats"]
                assert st["failed"] == st["started"] >= 1 and st["recorded"] == 0 and outcomes(tmp_path) == []
                # the breaker saw none of it: client traffic to the reasoning route is not refused
                r = await c.post("/v1/chat/completions", json=CHAT, headers={"x-thinkgate-force-route": "reasoning"})
                assert r.status_code >= 500  # reasoning fails for real, with its own error
                assert r.json()["error"]["code"] != "circuit_open"
        finally:
            stop(proc)

    async with (
        FakeOpenAIServer(words=4) as fast,
        FakeOpenAIServer(words=4) as reasoning,
        FakeOpenAIServer(reply="[[A]]") as judge,
    ):
        port = free_port()
        tmp2 = tmp_path / "budget"
        tmp2.mkdir()
        # one job spends 14 (shadow) + 2 x 11 (judge) tokens: a cap of 40 admits two, then stops
        proc = await start(config(tmp2, port, fast.api_base, reasoning.api_base, judge.api_base, art,
                                  budget_tokens_per_hour=40, max_concurrent=1), port)  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                for _ in range(10):
                    assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
                    await asyncio.sleep(0.15)  # let each job finish: the cap, not concurrency, decides
                await asyncio.sleep(0.5)
                st = (await c.get("/dashboard/api/learning")).json()["learning"]
            assert reasoning.stats.by_path.get("/v1/chat/completions") == 2
            assert st["stats"]["recorded"] == 2 and st["stats"]["over_budget"] == 8 and st["budget"]["tokens"] == 72
        finally:
            stop(proc)


async def test_hot_reload_under_load_bad_artifact_refused_and_sighup(tmp_path):
    async with FakeOpenAIServer(words=4) as fast, FakeOpenAIServer(words=4) as reasoning, FakeOpenAIServer(reply="[[A]]") as judge:
        port = free_port()
        live = write_artifact(tmp_path / "live", intercept=-5.0)  # routes fast
        new = write_artifact(tmp_path / "new", intercept=5.0)  # routes reasoning
        wide = tmp_path / "wide"
        write_artifact(wide, dim=2688)  # wider than the hash embedder's 384 values
        v_live, v_new = artifact_version(live), artifact_version(new)
        proc = await start(config(tmp_path, port, fast.api_base, reasoning.api_base, judge.api_base, live, shadow_rate=0.0), port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                seen: list[tuple[int, str, str]] = []
                stop_at = time.monotonic() + 3.0

                async def load() -> None:
                    while time.monotonic() < stop_at:
                        r = await c.post("/v1/chat/completions", json=CHAT)
                        seen.append((r.status_code, r.headers.get("x-thinkgate-router", ""), r.headers.get("x-thinkgate-route", "")))

                async def reloads() -> list[float]:
                    await asyncio.sleep(0.8)
                    bad = await c.post("/admin/router/reload", json={"artifact": str(wide)})
                    assert bad.status_code == 422 and "embedding values" in bad.json()["error"]["message"]
                    await asyncio.sleep(0.5)
                    t = time.perf_counter()
                    good = await c.post("/admin/router/reload", json={"artifact": str(new)})
                    assert good.status_code == 200, good.text
                    return [time.perf_counter() - t]

                results = await asyncio.gather(*(load() for _ in range(4)), reloads())
                assert results[-1][0] < 1.0
                assert seen and all(s == 200 for s, _, _ in seen), [x for x in seen if x[0] != 200][:3]
                assert {(v, route) for _, v, route in seen} == {(v_live, "fast"), (v_new, "reasoning")}
                assert seen[-1][1] == v_new

                # SIGHUP reloads the configured path: retrain `live` in place, then signal
                write_artifact(live, intercept=5.0, created="2026-12-01T10:00:00Z")
                v_hup = artifact_version(live)
                proc.send_signal(signal.SIGHUP)

                async def header() -> str:
                    return (await c.post("/v1/chat/completions", json=CHAT)).headers["x-thinkgate-router"]

                t0 = time.monotonic()
                while await header() != v_hup:
                    assert time.monotonic() - t0 < 10 and proc.poll() is None
                    await asyncio.sleep(0.1)
                state = (await c.get("/admin/router")).json()
                assert state["version"] == v_hup and state["trained_at"] == "2026-12-01T10:00:00Z" and state["refused"] == 1
                # a SIGHUP onto a broken artifact is refused; the process lives on with the old one
                (live / "meta.json").write_text("{broken")
                proc.send_signal(signal.SIGHUP)
                await asyncio.sleep(1.0)
                assert proc.poll() is None and await header() == v_hup
                assert (await c.get("/admin/router")).json()["refused"] == 2
        finally:
            stop(proc)



async def test_outcomes_go_to_a_redis_stream_that_calibrate_reads(tmp_path, redis_url):
    from calibrate.outcome_log import read_log

    async with FakeOpenAIServer(words=4) as fast, FakeOpenAIServer(words=4) as reasoning, FakeOpenAIServer(reply="[[A]]") as judge:
        port = free_port()
        art = write_artifact(tmp_path / "art", threshold=0.99)
        # a generous per-command timeout: this CPU is shared, and a timed-out XADD is (rightly) a failed job
        log = {"backend": "redis", "redis_url": redis_url, "stream_key": "tg:outcomes", "max_records": 1000, "timeout_ms": 5000}
        cfg = config(tmp_path, port, fast.api_base, reasoning.api_base, judge.api_base, art, outcome_log=log,
                     _top={"decisions": {"store_prompt": True}})  # fmt: skip
        proc = await start(cfg, port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                for i in range(6):
                    body = {"model": "auto", "messages": [{"role": "user", "content": f"question {i}"}]}
                    assert (await c.post("/v1/chat/completions", json=body)).status_code == 200

                async def view() -> dict:
                    return (await c.get("/dashboard/api/learning")).json()

                t0 = time.monotonic()
                while (v := await view())["outcomes"].get("total", 0) < 6:
                    assert time.monotonic() - t0 < 30, v
                    await asyncio.sleep(0.2)
            o = read_log(f"{redis_url}?stream=tg:outcomes")
            assert sorted(o.prompts) == [f"question {i}" for i in range(6)] and o.fast == [0.5] * 6
        finally:
            stop(proc)
