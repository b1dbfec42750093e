"""The base every settings section extends: unknown keys are errors, so a typo in
the YAML is reported with its path instead of being silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
