"""The dashboard as a new operator meets it (issue 27), in a real headless Chromium at
1400 px against a real gateway (create_app on uvicorn, a reloadable artifact, the
learning panel mounted): every panel is filled when the page says it has loaded, no
key-figure card is cut off, each row shows its endpoint (chat, completions, responses,
messages) and the comparison that decided it, and the detail view lists the time steps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.test_dashboard_browser import CHROMIUM, WAIT_MS, WordEmbedder, _free_port, playwright_sync

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    from router import config, dashboard
    from router.app import create_app
    from router.dashboard import learning as dashboard_learning
    from router.decisions.log import MemoryDecisionLog
    from router.learning.slot import ClassifierSlot
    from router.learning.testing import write_artifact
    from router.upstreams.fake import FakeReply, FakeUpstream

    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model", "price": {"input": 0.1, "output": 0.4}},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True, "price": {"input": 1, "output": 4}}},
        "routes": {"auto": {}}, "selfref": {"enabled": True, "mode": "mean_logprob", "threshold": 0.5}, "cache": {"enabled": False},
    })  # fmt: skip
    art = write_artifact(tmp_path_factory.mktemp("art") / "art", threshold=0.9)  # P ~ 0.5: every prompt goes fast first
    slot = ClassifierSlot.load(str(art), 384)
    log = MemoryDecisionLog(s.decisions)
    ups = {"fast": FakeUpstream("fast", "fast-model", lambda b: FakeReply("sure", token_prob=0.3)),
           "reasoning": FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="hmm"))}
    app = create_app(s, upstreams=ups, embedder=WordEmbedder(), classifier=slot, log_sink=log,
                     routes=[*dashboard.routes(log, None, s), *dashboard_learning.routes(slot, None)])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            msgs = [{"role": "user", "content": "What is the capital of France?"}]
            assert c.post("/v1/chat/completions", json={"model": "auto", "messages": msgs}).status_code == 200
            assert c.post("/v1/completions", json={"model": "auto", "prompt": "Say hello"}).status_code == 200
            assert c.post("/v1/responses", json={"model": "auto", "input": "Name a colour"}).status_code == 200
            assert c.post("/v1/messages", json={"model": "auto", "max_tokens": 20, "messages": msgs}).status_code == 200
        deadline = time.monotonic() + 10
        while len(log) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def page(gateway: str) -> Iterator[Any]:
    import shutil
    import tempfile

    profile = tempfile.mkdtemp(prefix="thinkgate-chromium-")
    pw = playwright_sync.sync_playwright().start()
    try:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1400, "height": 900}, device_scale_factor=1,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        p = ctx.new_page()
        p.set_default_timeout(WAIT_MS)
        p.errors = []  # type: ignore[attr-defined]
        p.on("pageerror", lambda e: p.errors.append(str(e)))
        yield p
        ctx.close()
    finally:
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)


def test_every_panel_is_filled_on_first_paint_and_nothing_is_cut_off(gateway: str, page: Any, tmp_path: Path) -> None:
    page.goto(gateway + "/dashboard")
    page.wait_for_selector("body[data-loaded=true]")
    # read in the same task that saw "loaded": the learning panel must not still be "–"
    state = page.evaluate("""() => ({
        artifact: document.getElementById('l-artifact').textContent,
        hidden: document.getElementById('learning').hidden,
        cut: [...document.querySelectorAll('.kpi .label, .kpi .note, .kpi .value')]
               .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.closest('.kpi').id + ': ' + e.textContent),
        width: document.documentElement.scrollWidth,
    })""")
    assert not state["hidden"] and state["artifact"] not in ("–", "", "none"), state
    assert state["cut"] == [], state["cut"]
    assert state["width"] <= 1400  # no sideways scroll at 1400 px
    page.screenshot(path=str(tmp_path / "dashboard-1400.png"), full_page=True)
    assert page.errors == []  # type: ignore[attr-defined]


def test_rows_show_the_endpoint_and_why(gateway: str, page: Any) -> None:
    page.goto(gateway + "/dashboard")
    page.wait_for_selector("body[data-loaded=true]")
    endpoints = page.eval_on_selector_all("#decisions-body td.endpoint", "tds => tds.map(t => t.textContent)")
    assert sorted(endpoints) == ["chat", "completions", "messages", "responses"]
    reasons = page.eval_on_selector_all("#decisions-body .reason", "els => els.map(e => e.textContent)")
    # every request escalated (the fast model is unsure): the row names the comparison
    assert reasons and all(r == "conf 0.300 < 0.500" for r in reasons), reasons
    page.locator("#decisions-body tr[data-decision-id]").first.click()
    page.wait_for_selector("#detail.open[data-loaded=true]")
    detail = page.locator("#detail-body").inner_text()
    assert "· upstream fast" in detail and "· upstream reasoning" in detail and "· other" in detail
    assert page.errors == []  # type: ignore[attr-defined]
