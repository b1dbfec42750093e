"""Not open by default (issue 23, finding 8): `thinkgate serve` refuses to serve beyond
loopback without API keys unless anonymous access is configured, refuses the shipped
placeholder keys, and says at start-up what it leaves open; the shipped deployments
cannot start open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from router import config
from router.access.auth import KeyStore, exposure
from router.config import ApiKey

ROOT = Path(__file__).resolve().parents[3]
FAKE = {"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake", "reasoning": True}}, "classifier": {"enabled": False}}


def test_no_keys_beyond_loopback_is_refused_unless_anonymous_is_explicit() -> None:
    none = KeyStore()
    for host in ("127.0.0.1", "::1", "localhost", "127.8.9.1"):
        refusal, lines = exposure(none, config.AuthSettings(), host)
        assert refusal is None and any("EVERY caller is admin" in ln for ln in lines), host
    for host in ("0.0.0.0", "::", "10.1.2.3", "gateway.internal"):
        refusal, _ = exposure(none, config.AuthSettings(), host)
        assert refusal is not None and "THINKGATE_API_KEYS" in refusal, host
        refusal, lines = exposure(none, config.AuthSettings(anonymous=True), host)
        assert refusal is None and any("anonymous" in ln for ln in lines)
    keyed = KeyStore([ApiKey(key="sk-a-real-secret-0123456789")])
    assert exposure(keyed, config.AuthSettings(), "0.0.0.0")[0] is None


@pytest.mark.parametrize("key", ["replace-me-admin", "REPLACE-ME", "changeme", "sk-placeholder-1"])
def test_placeholder_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="placeholder") as e:
        KeyStore([ApiKey(key=key)])
    assert key not in str(e.value)  # never quoted


def _serve(tmp_path: Path, cfg: dict, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    clean = {k: v for k, v in os.environ.items() if k != "THINKGATE_API_KEYS"}
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "serve", "--config", str(path), "--port", "1", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**clean, **(env or {})},
    )  # fmt: skip


def test_serve_refuses_to_bind_open_and_says_why(tmp_path: Path) -> None:
    r = _serve(tmp_path, FAKE, "--host", "0.0.0.0")
    assert r.returncode == 2, r.stderr
    assert "EVERY caller is admin" in r.stderr and "refusing to serve on 0.0.0.0" in r.stderr


def test_serve_refuses_the_kubernetes_secrets_placeholder_keys(tmp_path: Path) -> None:
    secret = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "secret.yaml").read_text()) if d)
    keys = secret["stringData"]["THINKGATE_API_KEYS"]
    r = _serve(tmp_path, FAKE, "--host", "0.0.0.0", env={"THINKGATE_API_KEYS": keys})
    assert r.returncode == 2 and "placeholder" in r.stderr, r.stderr
    assert "replace-me-admin" not in r.stderr and "replace-me-client" not in r.stderr  # the keys are never quoted


def test_the_example_deployment_cannot_start_open(tmp_path: Path) -> None:
    s = config.load(ROOT / "examples" / "deployment.yaml", {"OPENAI_API_KEY": "x"})
    assert s.server.host == "0.0.0.0" and not s.auth.keys and not s.auth.anonymous
    refusal, _ = exposure(KeyStore.from_settings(s.auth, env={}), s.auth, s.server.host)
    assert refusal is not None
