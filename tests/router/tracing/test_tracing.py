"""OpenTelemetry traces, exported over OTLP/HTTP to a receiver on loopback that
decodes the protobuf ExportTraceServiceRequest: the spans a request makes
(parse, cache, embed, classify, each upstream call, Self-Ref escalation, DEER
probes), their GenAI and decision attributes, the incoming traceparent
continued and passed on to the upstreams; off by default, configured by the
OTEL_* variables, and a dead collector never touches a request."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from router import config, tracing
from router.app import create_app
from router.build import build_upstreams
from router.cache import build_cache
from router.config import ClassifierSettings
from router.embedding.batcher import build_router_model
from router.tracing.receiver import OtlpReceiver
from router.upstreams.fake_server import FakeOpenAIServer
from router.upstreams.resilient import wrap_all
from tests.router.scripted_openai import ProbeReply, Script, ScriptedServer

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
THINKING = (
    ["Let", " me", " add", ".", " 2", "+", "2", " is", " 4", ".\n"]
    + ["Wait", ",", " check", " again", ":", " 4", ".\n"]
    + [" Done", "."] * 4
)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is 2+2?"}], "temperature": 0, "max_tokens": 200}


def settings(fast_base: str, reasoning_base: str) -> config.Settings:
    return config.from_dict(
        {
            "models": {
                "fast": {"provider": "openai", "model": "fast-model", "api_base": fast_base, "retries": 0},
                "reasoning": {
                    "provider": "openai", "model": "scripted", "api_base": reasoning_base, "reasoning": True, "retries": 0,
                    "deer": {"template": "local", "chat_template": TEMPLATE, "probe_mode": "concurrent", "probe_timeout_s": 2.0},
                },
            },
            "routes": {"auto": {}},
            "classifier": {"embedder": "hash", "artifact": None},
        }
    )  # fmt: skip


def traced_app(s: config.Settings, traces: Any) -> Any:
    upstreams = wrap_all(traces.wrap(build_upstreams(s), s.models), s.models, s.limits.breaker)
    embedder, _ = build_router_model(ClassifierSettings(embedder="hash", artifact=None))
    app = create_app(s, upstreams=upstreams, embedder=embedder, cache=build_cache(s.cache), middleware=[traces.middleware()])
    app.state.upstreams = upstreams  # no lifespan under ASGITransport: the test closes them
    return app


async def close(app: Any) -> None:
    for u in app.state.upstreams.values():
        await u.close()


def by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def children(spans: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in spans if s["parent_id"] == parent["span_id"]]


async def test_a_request_is_one_trace_with_every_step_and_the_decision():
    with OtlpReceiver() as rx:
        traces = tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_SERVICE_NAME": "tg-test"})
        assert traces is not None
        async with FakeOpenAIServer() as fast, ScriptedServer(Script(THINKING, probes=[ProbeReply(probs=[0.4, 0.99, 0.98])])) as deer:
            app = traced_app(settings(fast.api_base, deer.api_base), traces)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as client:
                # Self-Ref threshold above 1: the fast answer always escalates to the reasoning model
                headers = {"traceparent": TRACEPARENT, "x-thinkgate-selfref-threshold": "2"}
                r1 = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
                assert r1.status_code == 200, r1.text
                await asyncio.sleep(0.1)  # the cache write runs after the reply
                r2 = await client.post("/v1/chat/completions", json=CHAT, headers={"x-thinkgate-selfref-threshold": "2"})  # a new trace, a cache hit
                assert r2.headers["x-thinkgate-cache"] == "exact"
                await client.get("/healthz")  # probes are not traced
            await close(app)
        await traces.close()
        spans = rx.snapshot()

    assert {s["resource"].get("service.name") for s in spans} == {"tg-test"}
    mine = [s for s in spans if s["trace_id"] == TRACE_ID]
    (root,) = [s for s in mine if s["parent_id"] == PARENT_ID]  # the incoming trace continued
    assert root["name"] == "POST /v1/chat/completions" and root["kind"] == "server"
    a = root["attributes"]
    assert a["http.response.status_code"] == 200 and a["gen_ai.request.model"] == "auto"
    assert a["thinkgate.route"] == "reasoning" and a["thinkgate.escalated"] is True and a["thinkgate.reason"] == "escalated"
    assert a["thinkgate.cache"] == "miss" and a["thinkgate.deer.exit"] == "confident" and a["thinkgate.deer.exit_step"] == 1
    assert a["gen_ai.response.model"] == "scripted" and a["gen_ai.usage.output_tokens"] > 0
    assert a["thinkgate.request_id"] == r1.headers["x-thinkgate-request-id"]

    steps = {s["name"] for s in children(mine, root)}
    assert {"thinkgate.parse", "thinkgate.cache", "thinkgate.embed", "thinkgate.classify", "chat fast-model", "thinkgate.selfref.escalate"} <= steps
    lookups = sorted(s["attributes"]["thinkgate.cache.lookup"] for s in by_name(mine, "thinkgate.cache"))
    assert lookups == ["exact", "semantic"]
    (classify,) = by_name(mine, "thinkgate.classify")
    assert classify["attributes"]["thinkgate.route"] == "fast"  # before Self-Ref escalated it

    (fast_call,) = by_name(mine, "chat fast-model")
    f = fast_call["attributes"]
    assert fast_call["kind"] == "client" and f["gen_ai.system"] == "openai" and f["gen_ai.operation.name"] == "chat"
    assert f["gen_ai.request.model"] == "fast-model" and f["gen_ai.usage.input_tokens"] > 0 and f["gen_ai.usage.output_tokens"] > 0
    assert f["gen_ai.response.finish_reasons"] == ["stop"]

    (escalate,) = by_name(mine, "thinkgate.selfref.escalate")
    (reasoning,) = children(mine, escalate)
    assert reasoning["name"] == "chat scripted" and reasoning["attributes"]["thinkgate.deer.exit"] == "confident"
    under = children(mine, reasoning)
    probes = [s for s in under if s["name"] == "thinkgate.deer.probe"]
    assert len(probes) == 1 and probes[0]["attributes"]["thinkgate.deer.step"] == 1
    assert [s["name"] for s in children(mine, probes[0])] == ["text_completion scripted"]  # the probe's HTTP call
    streams = [s for s in under if s["name"] == "text_completion scripted"]
    assert len(streams) >= 2 and all(s["attributes"]["gen_ai.request.stream"] for s in streams)  # thinking + answer

    # the trace went on to the upstreams: the fast call's span is the fast server's parent
    assert f"00-{TRACE_ID}-{fast_call['span_id']}-01" in fast.traceparents
    client_ids = {s["span_id"] for s in mine if s["name"] == "text_completion scripted"}
    seen = [tp.split("-") for tp in deer.traceparents if tp]
    assert len(seen) == len(deer.traceparents) and {t[1] for t in seen} == {TRACE_ID} and {t[2] for t in seen} <= client_ids

    # the second request: its own trace, answered by the cache, no upstream span
    (hit_root,) = [s for s in spans if s["trace_id"] != TRACE_ID and s["parent_id"] is None]
    assert hit_root["attributes"]["thinkgate.route"] == "cache" and hit_root["attributes"]["thinkgate.cache"] == "exact"
    assert not [s for s in spans if s["trace_id"] == hit_root["trace_id"] and s["kind"] == "client"]
    assert not [s for s in spans if "healthz" in s["name"]]


async def test_a_dead_collector_never_touches_a_request(unused_tcp_port):
    # nothing listens on the endpoint: exports fail on the background thread
    traces = tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{unused_tcp_port}"})
    async with FakeOpenAIServer() as fast:
        s = settings(fast.api_base, fast.api_base)
        app = traced_app(s, traces)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as client:
            t0 = time.perf_counter()
            rs = await asyncio.gather(*(client.post("/v1/chat/completions", json={**CHAT, "temperature": 0.7}) for _ in range(20)))
            took = time.perf_counter() - t0
        await close(app)
    assert [r.status_code for r in rs] == [200] * 20
    assert took < 5.0  # no request waited on the exporter's retries
    t0 = time.perf_counter()
    await traces.close(timeout_s=2.0)
    assert time.perf_counter() - t0 < 3.0  # shutdown is bounded too


def test_off_by_default_and_by_the_standard_variables():
    assert not tracing.enabled_by({})
    assert tracing.enabled_by({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing.enabled_by({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert tracing.enabled_by({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.enabled_by({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert not tracing.enabled_by({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing.from_env({}) is None
    # a setting thinkgate cannot honour is logged and leaves tracing off, never a crash
    assert tracing.from_env({"OTEL_TRACES_EXPORTER": "zipkin"}) is None
    assert tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}) is None


def test_untraced_hooks_are_no_ops():
    assert tracing.current() is None
    with tracing.span("x", {"a": 1}) as sp:
        sp.set("b", 2)
    assert tracing.headers() is None
    with tracing.client("openai", "m", {}, "fast") as call:
        assert call.headers is None
        call.result({})
    tracing.record_decision(object())


def test_tracing_off_loads_no_opentelemetry():
    code = (
        "import sys, yaml\n"
        "from router import config\nfrom router.build import build_app\n"
        "s = config.from_dict({'models': {'fast': {'provider': 'fake'}}, 'routes': {'auto': {'pin': 'fast'}}, 'classifier': {'enabled': False}})\n"
        "build_app(s, env={})\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk') or m.startswith('router.tracing.')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_thinkgate_serve_exports_by_the_otel_variables(tmp_path, unused_tcp_port):
    """The shipped command: OTEL_* in the environment are all it takes."""
    with OtlpReceiver() as rx:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({
            "models": {"fast": {"provider": "fake", "model": "fake-fast"}},
            "routes": {"auto": {"pin": "fast"}}, "classifier": {"enabled": False},
        }))  # fmt: skip
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "PYTHONPATH": str(ROOT),
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
            "OTEL_SERVICE_NAME": "tg-serve",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        srv = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "serve", "--config", str(cfg), "--port", str(unused_tcp_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{unused_tcp_port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            r = httpx.post(f"{base}/v1/chat/completions", json=CHAT, headers={"traceparent": TRACEPARENT}, timeout=10)
            assert r.status_code == 200
            bad = httpx.post(f"{base}/v1/chat/completions", json={"model": "nope", "messages": []}, timeout=10)
            assert bad.status_code in (400, 404)
            spans = rx.wait_for(lambda s: len([x for x in s if x["kind"] == "server"]) >= 2, timeout=10)
        finally:
            srv.terminate()
            srv.wait(timeout=30)
    roots = [s for s in spans if s["kind"] == "server"]
    assert len(roots) == 2
    ok = next(s for s in roots if s["trace_id"] == TRACE_ID)
    assert ok["parent_id"] == PARENT_ID and ok["attributes"]["thinkgate.route"] == "fast"
    assert ok["resource"]["service.name"] == "tg-serve" and ok["resource"]["deployment.environment"] == "test"
    failed = next(s for s in roots if s["trace_id"] != TRACE_ID)
    assert failed["attributes"]["http.response.status_code"] == bad.status_code
    (parse,) = [s for s in spans if s["trace_id"] == failed["trace_id"] and s["name"] == "thinkgate.parse"]
    assert parse["status"] == 2  # the bad body is recorded where it was found
    assert {s["name"] for s in spans if s["trace_id"] == TRACE_ID} >= {"thinkgate.parse", "thinkgate.classify", "chat fake-fast"}
