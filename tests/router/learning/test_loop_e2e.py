"""The whole learning loop on a real `thinkgate serve` with the real MiniLM (ONNX)
embedder and the shipped artifact: shadow-sampled traffic graded by a judge ->
the outcome log -> `calibrate train` on it -> POST /admin/router/reload -> the
retrained artifact routes the next requests and names itself in the header."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from typing import Any

import httpx
import pytest

from calibrate.cli import main as calibrate
from router.learning.slot import artifact_version
from router.learning.testing import config, start, stop
from router.upstreams.fake_server import FakeOpenAIServer
from router.upstreams.llamacpp import free_port

pytestmark = pytest.mark.slow


class Judge(FakeOpenAIServer):
    """Prefers the reasoning model's answer on arithmetic, calls everything else a tie."""

    def _completion(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        user = body["messages"][-1]["content"]
        a = re.search(r"Assistant A's Answer\]\n(.*?)\n\[The End", user, re.S).group(1)  # type: ignore[union-attr]
        self.reply = "[[C]]"
        if "Compute" in user:
            self.reply = "[[A]]" if "reasoned" in a else "[[B]]"
        return super()._completion(body, chat)


def prompts(n: int, seed: int) -> list[tuple[str, bool]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append((f"Compute {rng.randint(100, 999)} * {rng.randint(100, 999)} - {rng.randint(10, 99)} step by step", True))
        else:
            out.append((f"Say hello to {rng.choice(['Ann', 'Bo', 'Cy', 'Di', 'Ed'])} politely, {rng.choice(['please', 'today'])}", False))
    return out


async def test_shadow_log_train_reload_loop(tmp_path):
    async with (
        FakeOpenAIServer(words=4) as fast,
        FakeOpenAIServer(reply="the reasoned answer") as reasoning,
        Judge() as judge,
    ):
        port = free_port()
        cfg = config(tmp_path, port, fast.api_base, reasoning.api_base, judge.api_base, tmp_path,
                     max_concurrent=64, _top={"classifier": {"artifact": "default", "embedder": "onnx", "encoder": "minilm"},
                                              "decisions": {"store_prompt": True}})  # fmt: skip
        proc = await start(cfg, port, timeout=120)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                r = await c.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
                shipped = r.headers["x-thinkgate-router"]
                assert shipped == artifact_version("default")
                traffic = prompts(80, seed=1)
                sem = asyncio.Semaphore(4)

                async def ask(text: str) -> None:
                    async with sem:
                        r = await c.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": text}]})
                        assert r.status_code == 200

                await asyncio.gather(*(ask(t) for t, _ in traffic))
                log = tmp_path / "outcomes.jsonl"
                t0 = time.monotonic()
                while not log.exists() or len(log.read_text().splitlines()) < 81:
                    assert time.monotonic() - t0 < 30, "the outcome log did not fill"
                    await asyncio.sleep(0.2)
                recs = [json.loads(ln) for ln in log.read_text().splitlines()]
                hard = [r for r in recs if "Compute" in str(r["prompt"])]
                assert len(hard) == 40 and all(r["strong"] == 1.0 and r["fast"] == 0.0 for r in hard)
                assert all(r["artifact"] == shipped for r in recs)

                art = tmp_path / "retrained"
                assert calibrate(["train", "--outcomes", str(log), "--out", str(art), "--cv", "0", "--quiet",
                                  "--embedder", "onnx", "--target-share", "0.5"]) == 0  # fmt: skip
                rr = await c.post("/admin/router/reload", json={"artifact": str(art)})
                assert rr.status_code == 200, rr.text
                new = rr.json()["artifact"]["version"]
                assert new == artifact_version(art) and new != shipped

                routes = {}
                for text, is_hard in prompts(20, seed=2):  # prompts it never saw
                    r = await c.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": text}]})
                    assert r.headers["x-thinkgate-router"] == new
                    routes.setdefault(is_hard, []).append(r.headers["x-thinkgate-route"])
                assert routes[True].count("reasoning") >= 8 and routes[False].count("fast") >= 8, routes
        finally:
            stop(proc)
