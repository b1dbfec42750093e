"""The dashboard's learning panel in a real headless Chromium, against a real
`thinkgate serve` whose shadow-sampled traffic fills the outcome log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.learning.slot import artifact_version
from router.learning.testing import config, start, stop, write_artifact
from router.upstreams.fake_server import FakeOpenAIServer
from router.upstreams.llamacpp import free_port
from tests.browser.test_dashboard_browser import CHROMIUM, WAIT_MS, browser  # noqa: F401  (the fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"),
]
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is six times seven?"}]}


def test_learning_panel_shows_the_artifact_and_the_outcomes(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    async def serve_and_fill() -> tuple[Any, int, list[Any]]:
        servers = [await FakeOpenAIServer(words=4).start(), await FakeOpenAIServer(words=4).start(),
                   await FakeOpenAIServer(reply="[[B]]").start()]  # fmt: skip
        port = free_port()
        art = write_artifact(tmp_path / "art", threshold=0.99)
        proc = await start(config(tmp_path, port, *(s.api_base for s in servers), art, max_concurrent=64), port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for _ in range(12):
                assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
            for _ in range(100):
                if (await c.get("/dashboard/api/learning")).json()["outcomes"]["total"] == 12:
                    break
                await asyncio.sleep(0.1)
        return proc, port, servers

    # playwright's sync API owns this thread's event loop: the fake upstreams (which must
    # keep answering while the page polls) and the set-up run on a loop of their own
    import threading

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    proc, port, servers = asyncio.run_coroutine_threadsafe(serve_and_fill(), loop).result(120)
    try:
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{port}/dashboard")
        page.wait_for_function("document.getElementById('l-outcomes').textContent === '12'")
        assert page.locator("#learning").is_visible()
        assert page.locator("#l-artifact").text_content() == artifact_version(tmp_path / "art")
        assert "trained 2026-12-01T00:00:00Z" in (page.locator("#l-artifact-note").text_content() or "")
        assert "shadow rate 1" in (page.locator("#l-outcomes-note").text_content() or "")
        # a judge that always says "B" gives ties: no gap, so no APGR, and the page says why
        assert page.locator("#l-apgr").text_content() == "–"
        assert "not better" in (page.locator("#l-apgr-note").text_content() or "")
        assert page.locator("#l-live").text_content() == "50.0 %"
        assert errors == []
        page.close()
    finally:
        stop(proc)
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()
