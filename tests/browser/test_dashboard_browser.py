"""The dashboard in a real headless Chromium, against a real gateway (create_app,
uvicorn on a loopback port, API keys on) whose fake upstreams have served real
HTTP requests from the OpenAI client: the charts and the table show the counts
the responses' headers reported, filters work, a decision opens, and the page
updates live. Screenshots land in the test's tmp dir (and in $THINKGATE_SCREENSHOT_DIR if set)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

CHROMIUM = os.environ.get("THINKGATE_CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"),
]
playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

ADMIN_KEY, ACME_KEY, GLOBEX_KEY = "sk-ops-admin-0001", "sk-acme-user-0001", "sk-globex-user-0001"
THRESHOLD = 0.5
WAIT_MS = 20_000


# -- a real gateway with fake parts --------------------------------------------------


def _text(messages: list[dict[str, Any]]) -> str:
    c = messages[-1].get("content")
    return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c or [])


class WordEmbedder:
    """Deterministic 384-d unit vectors from the words (the real embedder is issue 3's)."""

    async def embed(self, messages: list[dict[str, Any]], then: Any = None) -> Any:
        v = np.zeros(384, dtype=np.float32)
        for w in _text(messages).lower().split():
            v[int(hashlib.sha1(w.encode()).hexdigest(), 16) % 384] += 1.0
        v = v / (np.linalg.norm(v) or 1.0)
        return v if then is None else (v, then(v))


class KeywordClassifier:
    threshold = THRESHOLD

    def predict(self, messages: list[dict[str, Any]], embedding: Any) -> float:
        text = _text(messages).lower()
        if any(w in text for w in ("prove", "derive", "integral")):
            return 0.62 + (len(text) % 30) / 100
        return 0.05 + (len(text) % 40) / 100


def fast_handler(body: dict[str, Any]) -> Any:
    from router import errors
    from router.upstreams.fake import FakeReply

    text = _text(body["messages"]).lower()
    if "boom" in text:
        raise errors.UpstreamRejected("the fast model refused this request", upstream="fast")
    return FakeReply(f"answer: {text[:30]}", token_prob=0.2 if "unsure" in text else 0.95)


def make_deer_upstream() -> Any:
    from router.upstreams.fake import FakeReply, FakeUpstream

    class DeerFake(FakeUpstream):
        """Fills ctx.deer as the DEER upstream would (the real one is issue 4's)."""

        def _fill(self, body: dict[str, Any], ctx: Any) -> None:
            if ctx.deer is None:
                return
            if "slowly" in _text(body["messages"]):
                ctx.deer.reason, ctx.deer.probes, ctx.deer.thinking_tokens, ctx.deer.probe_tokens = "natural_end", 6, 900, 108
            else:
                ctx.deer.reason, ctx.deer.probes, ctx.deer.exit_step = "confident", 2, 2
                ctx.deer.thinking_tokens, ctx.deer.probe_tokens, ctx.deer.confidence = 240, 36, 0.97
            ctx.deer.answer_tokens = 8

        async def complete(self, body: dict[str, Any], ctx: Any) -> dict[str, Any]:
            self._fill(body, ctx)
            return await super().complete(body, ctx)

        async def stream(self, body: dict[str, Any], ctx: Any) -> AsyncIterator[dict[str, Any]]:
            self._fill(body, ctx)
            async for chunk in super().stream(body, ctx):
                yield chunk

    return DeerFake("reasoning", "reasoning-model", lambda b: FakeReply("The answer is 42.", reasoning="Let me think. Wait, yes."))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    def __init__(self, url: str, log: Any) -> None:
        self.url = url
        self.log = log
        self.sent: list[dict[str, Any]] = []  # what each response said about itself

    def chat(self, key: str, prompt: str, *, stream: bool = False) -> None:
        import openai

        client = openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=30)
        msgs = [{"role": "user", "content": prompt}]
        try:
            if stream:
                with client.chat.completions.with_streaming_response.create(model="auto", messages=msgs, temperature=0, stream=True) as r:
                    headers = r.headers
                    assert "[DONE]" in r.text()
            else:
                r = client.chat.completions.with_raw_response.create(model="auto", messages=msgs, temperature=0)
                headers = r.headers
                assert r.parse().choices[0].message.content
        except openai.APIStatusError as e:
            # the classifier ran (route fast) before the upstream failed
            self.sent.append({"status": e.status_code, "route": "fast", "escalated": False, "cache": "miss", "id": None, "difficulty": "classified"})
            return
        self.sent.append(
            {
                "status": 200,
                "id": headers["x-thinkgate-request-id"],
                "route": headers["x-thinkgate-route"],
                "escalated": headers["x-thinkgate-escalated"] == "true",
                "cache": headers["x-thinkgate-cache"],
                "difficulty": headers.get("x-thinkgate-difficulty") or None,
            }
        )

    def wait_logged(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.log) < n:  # the pipeline logs after the response, in the background
            assert time.monotonic() < deadline, f"only {len(self.log)} of {n} decisions logged"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    import uvicorn
    from prometheus_client import CollectorRegistry
    from starlette.middleware import Middleware

    from router import config, dashboard
    from router.access import auth
    from router.app import create_app
    from router.cache import build_cache
    from router.decisions.log import MemoryDecisionLog
    from router.decisions.metrics import Metrics
    from router.upstreams.fake import FakeUpstream

    settings = config.from_dict(
        {
            "models": {
                "fast": {"provider": "fake", "model": "fast-model", "price": {"input": 0.15, "output": 0.6}},
                "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True, "price": {"input": 1.1, "output": 4.4}},
            },
            "routes": {"auto": {"threshold": THRESHOLD}},
            "selfref": {"enabled": True, "mode": "mean_logprob", "threshold": 0.5},
            "cache": {"enabled": True, "semantic": False},
            "auth": {
                "keys": [
                    {"key": ADMIN_KEY, "tenant": "ops", "admin": True},
                    {"key": ACME_KEY, "tenant": "acme"},
                    {"key": GLOBEX_KEY, "tenant": "globex"},
                ]
            },
        }
    )
    log, metrics = MemoryDecisionLog(settings.decisions), Metrics(CollectorRegistry())
    keys = auth.KeyStore(settings.auth.keys)
    app = create_app(
        settings,
        upstreams={"fast": FakeUpstream("fast", "fast-model", fast_handler), "reasoning": make_deer_upstream()},
        embedder=WordEmbedder(),
        classifier=KeywordClassifier(),
        cache=build_cache(settings.cache),
        log_sink=log,
        metrics=metrics,
        routes=dashboard.routes(log, metrics, settings),
        middleware=[Middleware(auth.AuthMiddleware, keys=keys, public_paths=(*auth.PUBLIC_PATHS, *dashboard.PUBLIC_PATHS))],
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    gw = Gateway(f"http://127.0.0.1:{port}", log)
    try:
        easy = ["What is the capital of France?", "Translate 'good morning' to Spanish", "Name three primary colors",
                "How many legs does a spider have?", "What is 12 plus 30?", "Give me a synonym for happy"]  # fmt: skip
        hard = ["Prove that the square root of 2 is irrational", "Derive the quadratic formula step by step",
                "Compute the integral of x^2 e^x dx", "Prove slowly that there are infinitely many primes"]  # fmt: skip
        unsure = ["I am unsure: what year did the Hanseatic League end?", "unsure - who wrote the Voynich manuscript?"]
        for i, p in enumerate(easy):
            gw.chat(ACME_KEY if i % 2 == 0 else GLOBEX_KEY, p, stream=i == 1)
        for i, p in enumerate(hard):
            gw.chat(GLOBEX_KEY if i % 2 else ACME_KEY, p, stream=i == 2)
        for p in unsure:
            gw.chat(ACME_KEY, p)
        for p in easy[:3:2]:  # asked again, same tenant: exact cache hits
            gw.chat(ACME_KEY, p)
        gw.chat(GLOBEX_KEY, "boom: this one fails upstream")
        gw.wait_logged(len(gw.sent))
        yield gw
    finally:
        server.should_exit = True
        thread.join(timeout=15)


# -- the browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A persistent Chromium context on a throwaway profile (never a downloaded browser)."""
    profile = tempfile.mkdtemp(prefix="thinkgate-chromium-")
    pw = playwright_sync.sync_playwright().start()
    try:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],  # fmt: skip
            viewport={"width": 1440, "height": 900},
            device_scale_factor=1,
            # Playwright evaluates wait_for_function's string predicates with eval, which the
            # dashboard's CSP (script-src 'self') rightly forbids; test_dashboard_operator.py
            # runs the dashboard under its CSP
            bypass_csp=True,
        )
        yield ctx
        ctx.close()
    finally:
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)


def _page(browser: Any) -> Any:
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


def _attr(page: Any, selector: str, name: str) -> str | None:
    return page.locator(selector).first.get_attribute(name)


def test_dashboard_shows_real_traffic(gateway: Gateway, browser: Any, tmp_path: Path) -> None:
    sent = gateway.sent
    total = len(sent)
    routes = Counter(s["route"] for s in sent)
    escalated = sum(1 for s in sent if s["escalated"])
    classified = sum(1 for s in sent if s.get("difficulty"))
    assert routes["fast"] and routes["reasoning"] and routes["cache"] == 2 and escalated == 2  # the traffic did what we meant

    page = _page(browser)
    page.goto(gateway.url + "/dashboard")
    # keys are configured: the page asks for an admin key; a user key is refused
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#auth-key", ACME_KEY)
    page.click("#auth-form button")
    page.wait_for_function("document.querySelector('#auth-form p').textContent.includes('not an admin key')")
    page.fill("#auth-key", ADMIN_KEY)
    page.click("#auth-form button")
    page.wait_for_selector("body[data-loaded=true]")
    assert page.locator("#auth").is_hidden()
    assert page.locator("#empty").is_hidden()

    # KPIs and charts show the counts the responses reported
    assert _attr(page, "#kpi-total", "data-value") == str(total)
    assert page.locator("#kpi-total .value").inner_text() == str(total)
    chart = "#chart-routes svg"
    for route in ("fast", "reasoning", "cache"):
        assert _attr(page, chart, f"data-{route}") == str(routes[route]), route
    assert sum(int(r.get_attribute("data-count")) for r in page.locator(f"{chart} rect[data-route]").all()) == total
    assert _attr(page, "#kpi-escalation", "data-value") == str(escalated)
    assert _attr(page, "#kpi-cache", "data-value") == "2"
    hist = "#chart-difficulty svg"
    assert _attr(page, hist, "data-n") == str(classified)
    assert sum(int(r.get_attribute("data-count")) for r in page.locator(f"{hist} rect.bar").all()) == classified
    assert float(_attr(page, "#threshold-line", "data-threshold")) == THRESHOLD
    assert page.locator("#chart-latency svg g[data-route=fast]").count() == 1
    assert page.locator("#chart-latency svg g[data-route=reasoning]").count() == 1
    assert page.locator("#chart-cost #cost-actual").count() == 1
    deer_runs = sum(1 for s in sent if s["route"] == "reasoning")
    assert _attr(page, "#chart-deer svg", "data-requests") == str(deer_runs)
    assert page.locator("#chart-deer rect[data-reason=confident]").count() == 1
    assert page.locator("#kpi-deer .value").inner_text() not in ("–", "n/a")  # a natural-end run gives the reference

    # the table lists every decision, newest first, each row tagged with its id
    rows = page.locator("#decisions-body tr[data-decision-id]")
    assert rows.count() == total
    ids = [r.get_attribute("data-decision-id") for r in rows.all()]
    assert {s["id"] for s in sent if s["id"]} <= set(ids)
    assert ids[0] == gateway.log.newest(1)[0]["id"]
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    if os.environ.get("THINKGATE_SCREENSHOT_DIR"):  # keep a copy to look at
        shutil.copyfile(tmp_path / "dashboard.png", os.path.join(os.environ["THINKGATE_SCREENSHOT_DIR"], "dashboard.png"))

    # filters narrow the table
    page.select_option("#f-route", "reasoning")
    page.wait_for_function(f"document.querySelectorAll('#decisions-body tr[data-decision-id]').length === {routes['reasoning']}")
    assert {r.get_attribute("data-route") for r in rows.all()} == {"reasoning"}
    page.select_option("#f-escalated", "true")
    page.wait_for_function(f"document.querySelectorAll('#decisions-body tr[data-decision-id]').length === {escalated}")
    page.select_option("#f-tenant", "acme")  # both unsure prompts came from acme
    page.wait_for_timeout(300)
    assert rows.count() == escalated
    page.select_option("#f-tenant", "globex")
    page.wait_for_selector("#decisions-empty:not([hidden])")
    page.click("#filters button[type=reset]")
    page.select_option("#f-cache", "exact")
    page.wait_for_function("document.querySelectorAll('#decisions-body tr[data-decision-id]').length === 2")

    # open one decision: an escalated one, with its Self-Ref and DEER details
    page.select_option("#f-cache", "")
    page.select_option("#f-escalated", "true")
    page.wait_for_function(f"document.querySelectorAll('#decisions-body tr[data-decision-id]').length === {escalated}")
    target = rows.first.get_attribute("data-decision-id")
    rows.first.click()
    page.wait_for_selector(f"#detail.open[data-decision-id='{target}'][data-loaded=true]")
    detail = page.locator("#detail-body").inner_text()
    assert "escalated\nyes" in detail.replace("\t", "\n")
    assert "DEER" in detail and "confident" in detail
    assert page.locator(f"#decisions-body tr.selected[data-decision-id='{target}']").count() == 1
    page.wait_for_timeout(250)  # the drawer's slide-in
    page.screenshot(path=str(tmp_path / "dashboard-detail.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#detail:not(.open)")

    # live: new traffic shows up without a reload
    page.click("#filters button[type=reset]")
    gateway.chat(GLOBEX_KEY, "What colour is the sky on a clear day?")
    gateway.chat(ACME_KEY, "Prove that 17 is prime")
    gateway.wait_logged(total + 2)
    page.wait_for_function(f"document.querySelector('#kpi-total').dataset.value === '{total + 2}'", timeout=WAIT_MS)
    page.wait_for_function(f"document.querySelectorAll('#decisions-body tr[data-decision-id]').length === {total + 2}")
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


def test_metrics_follow_the_same_traffic(gateway: Gateway) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(gateway.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200
    total = sum(s.value for f in text_string_to_metric_families(r.text) for s in f.samples if s.name == "thinkgate_requests_total")
    assert total == len(gateway.sent)
    assert httpx.get(gateway.url + "/metrics", headers={"authorization": f"Bearer {ACME_KEY}"}).status_code == 403


def test_empty_dashboard(browser: Any, tmp_path: Path) -> None:
    """A fresh gateway: the page says so instead of drawing empty axes."""
    import uvicorn
    from starlette.applications import Starlette

    from router.dashboard import routes
    from router.decisions.log import MemoryDecisionLog

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes(MemoryDecisionLog())), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        page = _page(browser)
        page.goto(f"http://127.0.0.1:{port}/dashboard")
        page.wait_for_selector("body[data-loaded=true]")
        assert page.locator("#empty").is_visible()
        assert f"http://127.0.0.1:{port}/v1/chat/completions" in page.locator("#empty-curl").inner_text()
        assert _attr(page, "#kpi-total", "data-value") == "0"
        assert page.locator("#chart-routes svg text.nodata").text_content() == "No requests yet"
        assert page.locator("#decisions-empty").is_visible()
        page.screenshot(path=str(tmp_path / "dashboard-empty.png"))
        assert page.errors == []  # type: ignore[attr-defined]
        page.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)

