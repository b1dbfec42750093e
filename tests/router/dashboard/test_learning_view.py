"""The dashboard's learning view over outcome records (router/dashboard/learning.py)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from router.dashboard import learning
from router.learning.outcome_log import JsonlOutcomeLog


def _rec(i: int, difficulty: float, fast: float, strong: float, artifact: str = "a@1", source: str = "shadow") -> dict:
    return {"id": f"r{i}", "fast": fast, "strong": strong, "difficulty": difficulty, "threshold": 0.5,
            "artifact": artifact, "source": source, "tenant": "t"}


def test_quality_on_shadow_records_only():
    # the hard half (difficulty >= 0.5) needs the strong model: a perfect ranking
    recs = [_rec(i, 0.9, 0.0, 1.0) for i in range(10)] + [_rec(10 + i, 0.1, 1.0, 1.0) for i in range(10)]
    recs += [_rec(99, 0.0, 0.0, 1.0, source="escalation")]  # biased sample: not scored
    q = learning.quality(recs)
    assert q["n"] == 20 and q["q_fast"] == 0.5 and q["q_strong"] == 1.0
    assert q["apgr"] > 0.7 and q["live_share"] == 0.5 and q["live_quality"] == 1.0 and q["live_pgr"] == 1.0
    assert "note" in learning.quality(recs[:5]) and learning.quality(recs[:5])["n"] == 5


async def test_learning_api_reports_the_log_and_the_artifact(tmp_path):
    log = JsonlOutcomeLog(tmp_path / "o.jsonl")
    for i in range(12):
        await log.append(_rec(i, i / 12, float(i < 6), 1.0, artifact="a@1" if i < 11 else "old@0"))

    class Slot:
        class current:
            version = "a@1"

        def state(self):
            return {"version": "a@1", "reloads": 0}

    class Learner:
        def __init__(self):
            self.log = log

        def state(self):
            return {"enabled": True, "stats": {}}

    app = Starlette(routes=learning.routes(Slot(), Learner()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as c:
        out = (await c.get("/dashboard/api/learning")).json()
        assert out["artifact"]["version"] == "a@1" and out["outcomes"]["total"] == 12
        assert out["outcomes"]["by_source"] == {"shadow": 12}
        assert out["quality"]["current_artifact"]["n"] == 11 and out["quality"]["window"]["n"] == 12
        assert (await c.get("/dashboard/api/learning?window=0")).status_code == 400
    app = Starlette(routes=learning.routes(None, None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as c:
        assert (await c.get("/dashboard/api/learning")).json() == {"artifact": None, "learning": None}
