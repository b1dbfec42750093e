"""Self-Ref that streams, end to end on the real local model: a `thinkgate
serve` on the embedded default with `selfref.stream: prefix:8` (SmolLM2 on
llama.cpp as the fast model and, with DEER, the reasoning model). A kept answer's
first delta arrives before the answer ends; an escalated one is a single
answer, all from the reasoning model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.components import missing
from tests.e2e.conftest import ROOT, local_model_available
from tests.e2e.serve import serve

pytestmark = pytest.mark.slow

FAST_MODEL, REASONING_MODEL = "smollm2-135m-instruct", "smollm2-135m-thinking"  # router/embedded.yaml


@pytest.fixture(scope="module")
def prefix_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    why = local_model_available()
    if why:
        missing(why)
    cfg = yaml.safe_load((ROOT / "router" / "embedded.yaml").read_text())
    cfg["selfref"]["stream"] = "prefix:8"
    cfg["classifier"] = {"enabled": False}  # routes are forced per request: no encoder to load
    d = tmp_path_factory.mktemp("prefix")
    (d / "c.yaml").write_text(yaml.safe_dump(cfg))
    with serve(d, d / "c.yaml") as url:
        yield url


def stream(url: str, threshold: str, prompt: str, max_tokens: int) -> tuple[httpx.Headers, list[tuple[float, dict[str, Any]]]]:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    headers = {"x-thinkgate-force-route": "fast", "x-thinkgate-selfref-threshold": threshold,
               "x-thinkgate-cache-control": "no-cache, no-store"}
    out: list[tuple[float, dict[str, Any]]] = []
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=300) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append((time.perf_counter() - t0, json.loads(line[6:])))
        return r.headers, out


def content(ch: dict[str, Any]) -> str:
    return "".join((c.get("delta") or {}).get("content") or "" for c in ch.get("choices") or [])


def test_a_kept_answer_streams_its_first_delta_before_the_answer_ends(prefix_gateway: str):
    h, chunks = stream(prefix_gateway, "0", "Write a short story about a cat who learns to fly.", 40)
    assert h["x-thinkgate-route"] == "fast" and h["x-thinkgate-escalated"] == "false"
    assert h["x-thinkgate-model"] == FAST_MODEL
    deltas = [(t, ch) for t, ch in chunks if content(ch)]
    assert len(deltas) > 16, "the answer must be longer than the prefix for this test to mean anything"
    first, last = deltas[0][0], deltas[-1][0]
    # decided on 8 tokens: the first delta arrives well before the last of ~40 tokens
    assert first < last * 0.5, (first, last)
    assert all(c.get("logprobs") is None for _, ch in chunks for c in ch.get("choices") or [])


def test_an_escalated_answer_is_one_answer_from_the_reasoning_model(prefix_gateway: str):
    h, chunks = stream(prefix_gateway, "1.5", "What is 17 + 25?", 32)
    assert h["x-thinkgate-escalated"] == "true" and h["x-thinkgate-route"] == "reasoning"
    assert h["x-thinkgate-model"] == REASONING_MODEL
    assert {ch.get("model") for _, ch in chunks} == {REASONING_MODEL}  # no fast chunk reached the client
    assert len({ch.get("id") for _, ch in chunks}) == 1
    finishes = [c["finish_reason"] for _, ch in chunks for c in ch.get("choices") or [] if c.get("finish_reason")]
    assert len(finishes) == 1 and "".join(content(ch) for _, ch in chunks).strip()
