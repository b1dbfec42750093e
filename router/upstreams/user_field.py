"""The end-user id a client sends (OpenAI's `user`, Anthropic's `metadata.user_id`,
the Responses API's `user`) in the form the operator lets it reach an upstream
(`server.upstream_user`):

  hashed (default)  a keyed SHA-256 of it: the upstream can still tell users apart
                    (abuse tracking) but never sees the id itself. Claude Code's is a
                    JSON blob of its device and session ids; an email is guessable
                    from a plain hash, hence the key (`server.upstream_user_key`).
  as_is             sent unchanged
  drop              not sent at all

Applied at the upstream seam to every protocol's body, so no front end can forget it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

Mode = Literal["hashed", "as_is", "drop"]


def hashed(user: str, key: str) -> str:
    return "tg-" + hmac.new(key.encode(), user.encode(), hashlib.sha256).hexdigest()[:32]


def apply(body: dict[str, Any], mode: Mode, key: str) -> None:
    """Rewrite or remove body["user"] in place."""
    user = body.get("user")
    if user is None or mode == "as_is":
        return
    if mode == "drop" or not isinstance(user, str):
        body.pop("user", None)
        return
    body["user"] = hashed(user, key)
