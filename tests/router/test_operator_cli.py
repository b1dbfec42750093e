"""The smaller things a new operator meets first (issue 27): bare `thinkgate` prints help,
check-config fails on an artifact that does not exist and suggests the key meant, a route
naming a missing model reads as a sentence, every option has help text."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from router import cli, config

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"fast": {"provider": "fake", "model": "f"}, "reasoning": {"provider": "fake", "model": "r", "reasoning": True}}


def write(tmp_path: Path, data: dict) -> str:
    p = tmp_path / "c.json"
    p.write_text(json.dumps(data))
    return str(p)


def test_bare_thinkgate_prints_help(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "usage: thinkgate" in out and "serve" in out and "check-config" in out


def test_check_config_fails_when_the_artifact_does_not_exist(tmp_path, capsys):
    path = write(tmp_path, {"models": MODELS, "classifier": {"artifact": str(tmp_path / "nope")}})
    assert cli.main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "classifier.artifact" in err and "nope" in err
    assert cli.main(["check-config", "--config", write(tmp_path, {"models": MODELS})]) == 0  # the default artifact exists


def test_check_config_notes_a_route_threshold_that_overrides_the_artifact(tmp_path, capsys):
    path = write(tmp_path, {"models": MODELS, "routes": {"auto": {"threshold": 0.3}}})
    assert cli.main(["check-config", "--config", path]) == 0
    assert "route 'auto' sets threshold 0.3; it overrides the artifact's" in capsys.readouterr().out


@pytest.mark.parametrize("data, expect", [
    ({"models": MODELS, "routes": {"auto": {"treshold": 0.3}}}, "routes.auto.treshold: unknown key (did you mean 'threshold'?)"),
    ({"models": MODELS, "selfref": {"tresholds": 0.3}}, "selfref.tresholds: unknown key (did you mean 'threshold'?)"),
    ({"models": {"fast": {**MODELS["fast"], "pricee": {}}, "reasoning": MODELS["reasoning"]}}, "models.fast.pricee: unknown key (did you mean 'price'?)"),
    ({"modles": MODELS}, "modles: unknown key (did you mean 'models'?)"),
])
def test_unknown_keys_get_did_you_mean(data, expect):
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(data)
    assert expect in str(e.value)


def test_a_missing_model_reads_as_a_sentence():
    with pytest.raises(config.ConfigError) as e:
        config.from_dict({"models": MODELS, "routes": {"auto": {"fast": "fastt"}}})
    msg = str(e.value)
    assert "routes.auto.fast: 'fastt' is not a configured model (have: fast, reasoning)" in msg
    assert "(top level)" not in msg and "Value error" not in msg


def test_every_command_line_option_has_help_text():
    missing = []
    for f in [*ROOT.glob("calibrate/**/*.py"), ROOT / "router" / "cli.py", ROOT / "router" / "decisions" / "replay.py"]:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                if not any(k.arg == "help" for k in node.keywords):
                    missing.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not missing, missing
