"""How tests treat a real component (Redis, a model server, Chromium) that is
not installed: skipped on a developer's machine, a failure in CI, whose install
step (.ci/run) must have put it there (a skip would hide that)."""

from __future__ import annotations

import os

import pytest


def missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must install this: {why}")
    pytest.skip(why)
