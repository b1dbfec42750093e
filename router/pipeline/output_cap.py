"""A model's output limit at the upstream seam (`models.NAME.max_output_tokens`).

Agents ask for what their own vendor's biggest model allows (Claude Code: 128000)
whatever model the gateway routes them to; an upstream refuses a max_tokens over its
limit with a 400 the agent cannot fix. `over_max_output: clamp` (the default) sends
the limit instead and says so (`x-thinkgate-clamped`, the decision's `clamped`): the
answer can only be cut shorter than asked, and it says `length` / `max_tokens` if it
is. `refuse` gives the client the 400 up front, in its own protocol's shape.
"""

from __future__ import annotations

from typing import Any

from router import errors
from router.config import ModelSettings

_FIELDS = ("max_completion_tokens", "max_tokens")


def apply(body: dict[str, Any], ms: ModelSettings, name: str) -> str | None:
    """Clamp `body`'s max tokens to the model's limit in place; the note to record,
    or None when nothing was over. Raises InvalidRequest under `refuse`."""
    limit = ms.max_output_tokens
    if limit is None:
        return None
    note = None
    for f in _FIELDS:
        asked = body.get(f)
        if isinstance(asked, int) and not isinstance(asked, bool) and asked > limit:
            if ms.over_max_output == "refuse":
                raise errors.InvalidRequest(
                    f"max_tokens: {asked} is over the limit of {limit} of the model this request was routed to",
                    param="max_tokens", code="invalid_value",
                )  # fmt: skip
            body[f] = limit
            note = f"max_tokens {asked} -> {limit} (models.{name}.max_output_tokens)"
    return note
