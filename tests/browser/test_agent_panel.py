"""The dashboard's agent-sessions panel in a real headless Chromium, against a real
gateway (create_app under uvicorn on a loopback port) through which the scripted
agent ran two sessions over real HTTP: each session's row shows its turns by type
and its reasoning calls, as the responses' headers reported them."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.test_dashboard_browser import CHROMIUM, WAIT_MS, _free_port, browser  # noqa: F401  (the fixture)
from tests.router.pipeline.agent_session import Session, Task, TaskClassifier, ViewEmbedder, agent_model, run

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"),
]
EASY = Task("rename foo to bar", ["def foo(): ...", "tests pass"])
HARD = Task("hard: find the race in the scheduler", ["scheduler.py", "log", "trace"], summary=True)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, dict[str, Session]]]:
    import uvicorn

    from router import config, dashboard
    from router.app import create_app
    from router.decisions.log import MemoryDecisionLog
    from router.upstreams.fake import FakeUpstream

    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model"},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True}},
        "routes": {"auto": {}}, "selfref": {"enabled": False}, "cache": {"enabled": False},
    })  # fmt: skip
    log = MemoryDecisionLog(s.decisions)
    handler = agent_model([EASY, HARD])
    app = create_app(s, upstreams={n: FakeUpstream(n, f"{n}-model", handler) for n in ("fast", "reasoning")},
                     embedder=ViewEmbedder(), classifier=TaskClassifier(), log_sink=log, routes=dashboard.routes(log, None, s))  # fmt: skip
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"

    async def sessions() -> dict[str, Session]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            return {"alpha": await run([c], [EASY], headers={"x-thinkgate-session": "alpha"}),
                    "beta": await run([c], [HARD], headers={"x-thinkgate-session": "beta"})}  # fmt: skip

    # playwright's sync API owns the test thread's event loop: the agent runs on its own
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(asyncio.run(sessions())))
    t.start()
    t.join(60)
    deadline = time.monotonic() + 10
    while len(log) < 7:  # logged after each response, in the background
        assert time.monotonic() < deadline, f"only {len(log)} of 7 decisions logged"
        time.sleep(0.02)
    try:
        yield url, out
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_agent_panel_shows_each_sessions_turns_and_reasoning_calls(browser: Any, served: Any, tmp_path: Path) -> None:  # noqa: F811
    url, sessions = served
    assert [t.turn for t in sessions["beta"].turns] == ["task", "relay", "relay", "summary"]
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/dashboard")
    page.wait_for_selector("#agents-body tr")
    assert page.locator("#agents").is_visible()
    rows = page.locator("#agents-body tr")
    assert rows.count() == 2
    cells = [[c.strip() for c in rows.nth(i).locator("td").all_text_contents()] for i in range(2)]
    # newest first: beta (task, 2 relays, summary, all on reasoning), then alpha (task, 2 relays, fast)
    assert cells[0][2:8] == ["1", "2", "1", "4", "2", "reasoning-model"]
    assert cells[1][2:8] == ["1", "2", "0", "0", "0", "fast-model"]
    assert "2 sessions" in (page.locator("#agents-turns").text_content() or "")
    assert "4 relay" in (page.locator("#agents-turns").text_content() or "")
    assert errors == []
    shots = Path(os.environ.get("THINKGATE_SCREENSHOT_DIR") or tmp_path)
    page.locator("#agents").screenshot(path=str(shots / "dashboard-agents.png"))
    page.close()
