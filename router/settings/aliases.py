"""Model names clients send -> the configured name that serves them.

Agents send model names the operator cannot list ahead of time (Claude Code's
default changes with every release), so a key of `routes:` or `embeddings.models:`
may be a shell-style pattern (`claude-*`, `gpt-5*`, `gemini-*`, `*`). An exact key
always wins; among patterns the most specific wins: the one with the most literal
(non-wildcard) characters, ties going to the earlier key in the config. `*` has no
literal character, so it is the catch-all whatever its place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

_WILD = re.compile(r"\*|\?|\[[^\]]*\]")


def is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def specificity(pattern: str) -> int:
    """Literal characters: `claude-opus-*` (12) before `claude-*` (7) before `*` (0)."""
    return len(_WILD.sub("", pattern))


def ordered_patterns(names: Iterable[str]) -> list[str]:
    keyed = [(-specificity(n), i, n) for i, n in enumerate(names) if is_pattern(n)]
    return [n for _, _, n in sorted(keyed)]


def match(names: Iterable[str], name: str) -> str | None:
    """The key of `names` that serves `name`: itself when listed, else the most
    specific pattern that matches it (case-sensitive, as model ids are), else None."""
    keys = list(names)
    if name in keys:
        return name
    for p in ordered_patterns(keys):
        if fnmatchcase(name, p):
            return p
    return None


def route_key(routes: Mapping[str, Any], models: Mapping[str, Any], alias: str) -> str | None:
    """The `routes:` key serving `alias`, as the pipeline resolves it: an exact alias,
    then a configured model named directly (None: it is pinned, no route), then a
    pattern. `models` maps names to ModelSettings (their `model` ids count too)."""
    if alias in routes:
        return alias
    if alias in models or any(getattr(ms, "model", None) == alias for ms in models.values()):
        return None
    return match(routes, alias)
