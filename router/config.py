"""Validated settings: one YAML file, `${ENV}` substitution for secrets, built
once at start-up and passed down. Unknown keys are errors, so a typo is
reported with its path instead of being silently ignored.

This module is the public face: the root `Settings`, loading and `ConfigError`
live here, and every section is re-exported, so code imports them all from
`router.config`. The sections themselves are in router/settings/, one module per
part of the gateway they configure (models, rules, routing, stores, access,
learning, embeddings), because one file of every section outgrew a reader."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from router.settings.access import ApiKey, AuthSettings, BreakerSettings, LimitSettings, ServerSettings
from router.settings.embeddings import EmbeddingModelSettings, EmbeddingsSettings
from router.settings.learning import LearningSettings, OutcomeLogSettings
from router.settings.models import ChatTemplate, DeerSettings, ModelSettings, Price
from router.settings.routing import (
    AgentSettings,
    ClassifierSettings,
    EffortStep,
    JointSettings,
    RouteSettings,
    RoutingSettings,
    SelfRefSettings,
)
from router.settings.rules import RuleMatch, RuleSettings
from router.settings.section import Section as _Section
from router.settings.stores import CacheSettings, DecisionLogSettings, ResponsesSettings

__all__ = [
    "ApiKey", "AuthSettings", "BreakerSettings", "CacheSettings", "ChatTemplate", "ClassifierSettings", "ConfigError",
    "DecisionLogSettings", "DeerSettings", "EffortStep", "EmbeddingModelSettings", "EmbeddingsSettings",
    "JointSettings", "LearningSettings", "LimitSettings", "ModelSettings", "OutcomeLogSettings", "Price",
    "AgentSettings", "ResponsesSettings", "RouteSettings", "RoutingSettings", "RuleMatch", "RuleSettings", "SelfRefSettings",
    "ServerSettings", "Settings", "embedded_default", "from_dict", "load", "substitute_env",
]  # fmt: skip


class ConfigError(Exception):
    """A bad configuration; the message names the key and says why."""


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    models: dict[str, ModelSettings]
    routes: dict[str, RouteSettings] = Field(default_factory=lambda: {"auto": RouteSettings()})
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    selfref: SelfRefSettings = Field(default_factory=SelfRefSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    decisions: DecisionLogSettings = Field(default_factory=DecisionLogSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings)
    embeddings: EmbeddingsSettings = Field(default_factory=EmbeddingsSettings)
    rules: list[RuleSettings] = Field(default_factory=list)  # operator rules ahead of the classifier
    routing: RoutingSettings = Field(default_factory=RoutingSettings)

    @field_validator("models")
    @classmethod
    def _some_models(cls, v: dict[str, ModelSettings]) -> dict[str, ModelSettings]:
        if not v:
            raise ValueError("at least one model is required")
        return v

    @model_validator(mode="after")
    def _cache_follows_encoder(self) -> Settings:
        # the semantic cache compares the routing vector: its threshold is the encoder's unless the
        # config sets one (its width is the running encoder's: router/build.py)
        from router.settings.stores import default_semantic_check, default_semantic_threshold

        encoder = self.classifier.encoder
        if "semantic_check" not in self.cache.model_fields_set or encoder == "minilm":
            # MiniLM made the vector: a second look by MiniLM would see the same thing
            self.cache.__dict__["semantic_check"] = default_semantic_check(encoder)  # not marked as set
        if "semantic_threshold" not in self.cache.model_fields_set:
            self.cache.__dict__["semantic_threshold"] = default_semantic_threshold(encoder, self.cache.semantic_check)
        return self

    @model_validator(mode="after")
    def _routes_name_models(self) -> Settings:
        for alias, route in self.routes.items():
            for key in ("pin", "fast", "reasoning"):
                target = getattr(route, key)
                if key == "pin" and target is None:
                    continue
                if route.pin is not None and key != "pin":
                    continue
                if target not in self.models:
                    raise ValueError(
                        f"routes.{alias}.{key}: '{target}' is not a configured model (have: {', '.join(self.models)})"
                    )
        if self.learning.judge is not None and self.learning.judge not in self.models:
            raise ValueError(f"learning.judge: '{self.learning.judge}' is not a configured model (have: {', '.join(self.models)})")
        if "auto" not in self.routes:
            raise ValueError("routes: the 'auto' alias is required")
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules[{i}]: the name '{rule.name}' is used twice")
            seen.add(rule.name)
            unknown = [a for a in rule.match.alias or () if a not in self.routes]
            if unknown:
                raise ValueError(f"rules[{i}] ({rule.name}): match.alias '{unknown[0]}' is not a route alias (have: {', '.join(self.routes)})")
        return self


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(value: Any, env: dict[str, str] | None = None, path: str = "") -> Any:
    """Replace `${NAME}` / `${NAME:-default}` in every string of a loaded YAML tree."""
    env = os.environ if env is None else env
    if isinstance(value, dict):
        return {k: substitute_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable ${{{name}}} is not set")

        return _ENV.sub(repl, value)
    return value


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at `loc` (an error's location minus its last part) accepts."""
    import typing

    from pydantic import BaseModel

    model: Any = Settings
    pending: list[Any] = []  # container levels (dict keys, list indices) still to skip
    for part in loc:
        if pending:
            pending.pop()
            continue
        field = model.model_fields.get(str(part)) if isinstance(model, type) else None
        if field is None:
            return []
        ann = field.annotation
        while True:  # unwrap Optional / dict[str, X] / list[X] down to a section class
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            origin = typing.get_origin(ann)
            if origin in (dict, list):
                pending.append(part)
                ann = args[-1]
            elif args and origin is not None and not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                ann = args[0]
            else:
                break
        model = ann
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) and not pending else []


def _format(err: ValidationError) -> str:
    import difflib

    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            near = difflib.get_close_matches(str(e["loc"][-1]), _known_keys(e["loc"][:-1]), n=1, cutoff=0.6)
            if near:
                msg += f" (did you mean '{near[0]}'?)"
        elif e["type"] == "value_error":
            # our own checks name the key in their message; pydantic's prefix adds nothing
            msg = msg.removeprefix("Value error, ")
            if not e["loc"]:
                lines.append(f"  {msg}")
                continue
        lines.append(f"  {loc}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def from_dict(data: dict[str, Any], env: dict[str, str] | None = None) -> Settings:
    if not isinstance(data, dict):
        raise ConfigError("invalid configuration: the top level must be a mapping")
    data = substitute_env(data, env)
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e)) from None


def load(path: str | Path | None, env: dict[str, str] | None = None) -> Settings:
    """Load a YAML file, or the embedded default when `path` is None."""
    if path is None:
        return embedded_default()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    return from_dict(data, env)


def embedded_default() -> Settings:
    """No config, no API keys, CPU only: SmolLM2-135M on llama.cpp plays both roles
    (the reasoning role with a thinking prompt). A demo of the mechanics, not quality."""
    return load(Path(__file__).resolve().parent / "embedded.yaml")
