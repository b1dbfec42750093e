"""policies.rules: each matcher, precedence, and the config's validation of rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from policies.rules import facts, first_match, matches, ordered, prompt_tokens
from router import config
from router.config import RuleSettings
from router.types import Caller, ChatRequest

ROOT = Path(__file__).resolve().parents[2]


def req(content: str = "hello", *, system: str | None = None, alias: str = "auto", tenant: str = "default",
        headers: dict[str, str] | None = None, **body: Any) -> ChatRequest:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": "first turn"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": content},
    ]
    return ChatRequest(endpoint="chat", alias=alias, body={"model": alias, "messages": messages, **body},
                       messages=messages, caller=Caller(tenant=tenant), headers=headers or {})


def rule(**kw: Any) -> RuleSettings:
    kw.setdefault("name", "r")
    kw.setdefault("route", "fast")
    return RuleSettings.model_validate(kw)


@pytest.mark.parametrize(
    ("match", "hit", "miss"),
    [
        ({"alias": "auto"}, req(alias="auto"), req(alias="other")),
        ({"alias": ["a", "b"]}, req(alias="b"), req(alias="c")),
        ({"tenant": "acme"}, req(tenant="acme"), req(tenant="other")),
        ({"tools": True}, req(tools=[{"type": "function", "function": {"name": "f"}}]), req()),
        ({"tools": True}, req(functions=[{"name": "f"}]), req(tools=[])),
        ({"tools": False}, req(), req(tools=[{"type": "function", "function": {"name": "f"}}])),
        ({"min_tokens": 100}, req("x" * 400), req("x" * 300)),
        ({"max_tokens": 10}, req("x"), req("x" * 100)),
        ({"last_user": r"(?i)\bpython\b"}, req("and now in Python?"), req("and now in Rust?")),
        # only the LAST user turn is read: "first turn" is not
        ({"last_user": "^first"}, req("first thing"), req("second")),
        ({"system": "legal"}, req(system="You are a legal assistant"), req(system="You write poems")),
        ({"system": "legal"}, req(system="legal"), req()),
        ({"user": "bob"}, req(user="bob"), req(user="alice")),
        ({"metadata": {"tier": "gold"}}, req(metadata={"tier": "gold"}), req(metadata={"tier": "free"})),
        ({"metadata": {"tier": ["gold", "plat"]}}, req(metadata={"tier": "plat"}), req()),
        ({"headers": {"X-Team": "search"}}, req(headers={"x-team": "search"}), req(headers={"x-team": "ads"})),
    ],
)
def test_each_matcher_hits_and_misses(match: dict[str, Any], hit: ChatRequest, miss: ChatRequest):
    r = rule(match=match)
    assert matches(r, facts(hit)) is True
    assert matches(r, facts(miss)) is False


def test_every_key_of_a_match_must_hold_and_an_empty_match_matches_all():
    r = rule(match={"tenant": "acme", "tools": True})
    assert matches(r, facts(req(tenant="acme"))) is False
    assert matches(r, facts(req(tenant="acme", tools=[{"type": "function"}]))) is True
    assert matches(rule(), facts(req())) is True


def test_prompt_tokens_counts_every_turn_and_parts():
    assert prompt_tokens([{"role": "user", "content": "abcd" * 10}]) == 10
    assert prompt_tokens([{"role": "user", "content": [{"type": "text", "text": "abcd"}]}, {"role": "user", "content": "abcd"}]) == 2


def test_precedence_priority_then_file_order_and_one_rule_fires():
    rules = [
        rule(name="low", match={"tenant": "acme"}, route="fast"),
        rule(name="high", priority=10, match={"min_tokens": 1}, route="reasoning"),
        rule(name="high-later", priority=10, match={}, route="fast"),
        rule(name="acme-too", match={"tenant": "acme"}, threshold=0.1),
    ]
    assert [r.name for r in ordered(rules)] == ["high", "high-later", "low", "acme-too"]
    assert first_match(rules, facts(req("long enough", tenant="acme"))).name == "high"  # type: ignore[union-attr]
    assert first_match(rules, facts(req("", tenant="acme"))) is not None
    only_low = [rules[0], rules[3]]
    assert first_match(only_low, facts(req(tenant="acme"))).name == "low"  # type: ignore[union-attr]
    assert first_match(only_low, facts(req(tenant="other"))) is None


def base(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake"}}}
    data.update(over)
    return data


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"name": "x", "match": {"tools": True}}], "has no action"),
        ([{"name": "x", "route": "slow"}], "rules.0.route"),
        ([{"name": "x", "route": "fast", "match": {"last_user": "(unclosed"}}], "not a valid regex"),
        ([{"name": "x", "route": "fast", "match": {"colour": "red"}}], "rules.0.match.colour: unknown key"),
        ([{"name": "x", "route": "fast", "match": {"min_tokens": 10, "max_tokens": 5}}], "min_tokens is above"),
        ([{"name": "x", "route": "fast", "match": {"alias": "nope"}}], "'nope' is not a route alias"),
        ([{"name": "x", "route": "fast"}, {"name": "x", "threshold": 0.2}], "used twice"),
        ([{"name": "x", "threshold": 1.5}], "rules.0.threshold"),
        ([{"name": "x", "deer": 2.0}], "deer"),
        ([{"name": "x", "route": "fast", "match": {"headers": {"Authorization": "Bearer k"}}}], "credentials"),
        ([{"route": "fast"}], "rules.0.name"),
    ],
)
def test_bad_rules_are_reported_with_their_path(rules: list[dict[str, Any]], message: str):
    with pytest.raises(config.ConfigError, match=message):
        config.from_dict(base(rules=rules))


def test_yaml_off_is_deer_off_and_numbers_are_thresholds():
    s = config.from_dict(base(rules=[{"name": "a", "deer": False}, {"name": "b", "deer": 0.9}, {"name": "c", "deer": "on"}]))
    assert [r.deer for r in s.rules] == ["off", 0.9, "on"]


def _check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return subprocess.run([sys.executable, "-m", "router.cli", "check-config", "--config", str(p)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def test_check_config_validates_rules_and_lists_them_in_order(tmp_path: Path):
    head = "models: {fast: {provider: fake}, reasoning: {provider: fake}}\n"
    ok = _check_config(tmp_path, head + "rules:\n  - {name: tools-fast, match: {tools: true}, route: fast}\n"
                       "  - {name: long, priority: 5, match: {min_tokens: 6000}, route: reasoning}\n")
    assert ok.returncode == 0, ok.stderr
    assert "rules: long, tools-fast" in ok.stdout
    bad = _check_config(tmp_path, head + "rules:\n  - {name: r, match: {system: '[oops'}, route: fast}\n")
    assert bad.returncode == 2 and "rules.0.match.system" in bad.stderr and "not a valid regex" in bad.stderr
