"""Test and bench support for the learning loop (shipped in the package, as
router/cache/testing.py is): a small valid classifier artifact, and a real
`thinkgate serve` process configured with loopback fake upstreams
(router/upstreams/fake_server.py), the hash embedder and such an artifact, so it
starts in seconds on any CPU."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from policies.difficulty import EMBEDDER_ID, FORMAT
from policies.features import CHEAP_FEATURE_NAMES, FEATURE_VERSION

def write_artifact(path: Path, *, dim: int = 384, intercept: float = 0.0, threshold: float = 0.5, created: str = "2026-12-01T00:00:00Z") -> Path:
    """A valid format-2 artifact with no lexical part: P = sigmoid(intercept) for a zero embedding."""
    path.mkdir(parents=True, exist_ok=True)
    nf = len(CHEAP_FEATURE_NAMES)
    rng = np.random.default_rng(0)
    np.savez(
        path / "weights.npz",
        coef_emb=rng.normal(size=dim) * 0.01, emb_mean=np.zeros(dim), emb_scale=np.ones(dim),
        coef_feat=np.zeros(nf), feat_mean=np.zeros(nf), feat_scale=np.ones(nf), feat_weight=np.asarray(1.0),
        intercept=np.asarray(intercept), platt_a=np.asarray(1.0), platt_b=np.asarray(0.0),
    )  # fmt: skip
    meta = {
        "format": FORMAT, "embedder": EMBEDDER_ID, "embedding_dim": dim, "feature_version": FEATURE_VERSION,
        "features": list(CHEAP_FEATURE_NAMES), "threshold": threshold, "created": created, "procedure": "test",
    }  # fmt: skip
    (path / "meta.json").write_text(json.dumps(meta))
    return path


ROOT = Path(__file__).resolve().parents[2]


def config(tmp: Path, port: int, fast_base: str, reasoning_base: str, judge_base: str, artifact: Path, **learning: Any) -> Path:
    over = learning.pop("_top", {})
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "drain_s": 2, "log_level": "warning"},
        "models": {
            "fast": {"provider": "openai", "model": "fast-model", "api_base": fast_base, "logprobs": False, "retries": 0,
                     "price": {"input": 1, "output": 2}},
            "reasoning": {"provider": "openai", "model": "reasoning-model", "api_base": reasoning_base, "reasoning": True,
                          "retries": 0, "price": {"input": 10, "output": 40}},
            "judge": {"provider": "openai", "model": "judge-model", "api_base": judge_base, "logprobs": False, "retries": 0},
        },
        "routes": {"auto": {"fallback": False}},
        # the hash embedder stands in for MiniLM (the artifact above is written for MiniLM's id)
        "classifier": {"artifact": str(artifact), "embedder": "hash", "encoder": "minilm"},
        "selfref": {"enabled": False},
        "cache": {"enabled": False},
        "learning": {"shadow_rate": 1.0, "judge": "judge",
                     "outcome_log": {"backend": "jsonl", "path": str(tmp / "outcomes.jsonl")}, **learning},
    }  # fmt: skip
    cfg.update(over)
    path = tmp / "thinkgate.json"  # JSON is YAML
    path.write_text(json.dumps(cfg))
    return path


async def start(cfg: Path, port: int, timeout: float = 60) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "--config", str(cfg)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"thinkgate exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            try:
                if (await c.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("thinkgate did not start")


def stop(proc: subprocess.Popen[bytes]) -> str:
    """Stop the server (SIGTERM, then kill) and return what it wrote to stderr."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return err
