"""API keys: who is calling, and may they call this path.

Keys come from `auth.keys` and from `THINKGATE_API_KEYS` (comma-separated
`key[:tenant[:admin]]`, e.g. `sk-a,sk-b:acme,sk-ops:ops:admin`). Only their
SHA-256 digests are kept; a presented key is hashed and compared against every
digest in constant time. A caller is identified elsewhere by `key_id`, the
first 8 hex digits of the digest, which is safe to log.

`AuthMiddleware` is pure ASGI (not BaseHTTPMiddleware) so streamed responses
pass through unbuffered. It puts a `router.types.Caller` at
`scope["state"]["caller"]`; with no keys configured that is the default caller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from router import errors
from router.access import error_shapes
from router.config import ApiKey, AuthSettings
from router.types import Caller

log = logging.getLogger("thinkgate.auth")

Scope = dict[str, Any]
ASGIApp = Any

PUBLIC_PATHS: tuple[str, ...] = ("/healthz",)
ADMIN_PREFIXES: tuple[str, ...] = ("/dashboard", "/admin", "/metrics")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key: str) -> str:
    return digest(key).hex()[:8]


@dataclass(frozen=True)
class KeyEntry:
    digest: bytes
    key_id: str
    tenant: str
    admin: bool
    aliases: frozenset[str] | None
    rpm: int | None = None
    tpm: int | None = None
    controls: frozenset[str] | None = None

    def caller(self) -> Caller:
        return Caller(tenant=self.tenant, key_id=self.key_id, admin=self.admin, aliases=self.aliases)


def parse_env(value: str) -> list[ApiKey]:
    """`key[:tenant[:admin]]`, comma-separated. Errors never quote the key."""
    keys: list[ApiKey] = []
    for i, item in enumerate(value.split(",")):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) > 3 or not parts[0]:
            raise ValueError(f"THINKGATE_API_KEYS entry {i + 1}: expected key[:tenant[:admin]]")
        tenant = parts[1] if len(parts) > 1 and parts[1] else "default"
        flag = parts[2].lower() if len(parts) > 2 else ""
        if flag not in ("", "admin", "user"):
            raise ValueError(f"THINKGATE_API_KEYS entry {i + 1}: third field must be 'admin' or 'user'")
        keys.append(ApiKey(key=parts[0], tenant=tenant, admin=flag == "admin"))
    return keys


# the placeholder keys of the shipped examples (deploy/kubernetes/secret.yaml) and their
# like: a gateway started with one would be open to whoever read the example
_PLACEHOLDERS = ("replace-me", "replace_me", "replaceme", "changeme", "change-me", "change_me", "placeholder", "your-key")


def is_placeholder(key: str) -> bool:
    k = key.lower()
    return any(p in k for p in _PLACEHOLDERS)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def exposure(keys: KeyStore, auth: AuthSettings, host: str) -> tuple[str | None, list[str]]:
    """(why `thinkgate serve` must not start, or None; the lines to print at start-up
    saying what is open). No keys means every caller is the admin tenant: /admin,
    /dashboard and /metrics included."""
    if keys.enabled:
        return None, [f"auth: {len(keys)} API key(s); /healthz alone answers without one"]
    open_lines = [
        "auth: OFF - no API keys are configured: EVERY caller is admin",
        "auth: open to anyone who can reach the port: /v1/*, /admin/* (cache invalidation, router reload), /dashboard, /metrics",
    ]
    if _loopback(host):
        return None, [*open_lines, f"auth: only this machine can connect ({host}); set THINKGATE_API_KEYS before serving beyond it"]
    if auth.anonymous:
        return None, [*open_lines, f"auth: serving on {host} without keys because auth.anonymous is true"]
    why = (
        f"refusing to serve on {host} without API keys: every caller would be admin. Set {auth.env_var} "
        "(key[:tenant[:admin]],...) or auth.keys, bind 127.0.0.1, or set auth.anonymous: true to allow anonymous access"
    )
    return why, open_lines


class KeyStore:
    """Hashed API keys. Empty means auth is off."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._entries: list[KeyEntry] = []
        self._by_id: dict[str, KeyEntry] = {}
        for i, k in enumerate(keys):
            if is_placeholder(k.key):  # never quote the key itself
                raise ValueError(f"API key {i + 1} is a placeholder from an example (e.g. 'replace-me-...'); set a real secret")
            d = digest(k.key)
            entry = KeyEntry(
                digest=d,
                key_id=d.hex()[:8],
                tenant=k.tenant,
                admin=k.admin,
                aliases=frozenset(k.aliases) if k.aliases is not None else None,
                rpm=k.rpm,
                tpm=k.tpm,
                controls=frozenset(k.controls) if k.controls is not None else None,
            )
            if any(hmac.compare_digest(e.digest, d) for e in self._entries):
                raise ValueError(f"API key {entry.key_id} is configured twice")
            self._entries.append(entry)
            self._by_id[entry.key_id] = entry

    @classmethod
    def from_settings(cls, auth: AuthSettings, env: Mapping[str, str] | None = None) -> KeyStore:
        env = os.environ if env is None else env
        keys = list(auth.keys) + parse_env(env.get(auth.env_var, ""))
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, presented: str) -> KeyEntry | None:
        d = digest(presented)
        found: KeyEntry | None = None
        for e in self._entries:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(e.digest, d):
                found = e
        return found

    def entry(self, key_id: str | None) -> KeyEntry | None:
        return self._by_id.get(key_id) if key_id else None

    def allowed_controls(self, caller: Caller) -> frozenset[str] | None:
        """The x-thinkgate-* controls this caller may use; None: all."""
        e = self.entry(caller.key_id)
        return e.controls if e else None


def check_alias(caller: Caller, alias: str) -> None:
    """Raise Forbidden when the caller's key may not use this model alias."""
    if caller.aliases is not None and alias not in caller.aliases:
        raise errors.Forbidden(f"this API key may not use model '{alias}'", param="model", code="model_not_allowed")


def presented_key(scope: Scope) -> str | None:
    """The key from `Authorization: Bearer <key>`, else `x-api-key: <key>` (what
    Anthropic clients send) or `x-goog-api-key: <key>` (Google's); any works on every
    route. On the Gemini paths also `?key=<key>`, Google's query form."""
    token = bearer(scope)
    if token is not None:
        return token
    for name, value in scope.get("headers") or ():
        if name in (b"x-api-key", b"x-goog-api-key"):
            return value.decode("latin-1").strip() or None
    if error_shapes.is_gemini(scope.get("path", "")):
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if k == "key":
                return v.strip() or None
    return None


def bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            try:
                text = value.decode("latin-1").strip()
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
                return None
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None


async def send_error(
    send: Any, err: errors.ThinkgateError, extra_headers: Mapping[str, str] | None = None, *, path: str = ""
) -> None:
    """Answer with the error tree's body, in the shape of the protocol `path` speaks
    (used by middleware, before any route runs)."""
    body = json.dumps(error_shapes.body_for(path, err)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for k, v in {**err.headers, **(extra_headers or {})}.items():
        headers.append((k.lower().encode("latin-1"), str(v).encode("latin-1")))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Authenticates every HTTP request; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore,
        *,
        public_paths: Iterable[str] = PUBLIC_PATHS,
        admin_prefixes: Iterable[str] = ADMIN_PREFIXES,
    ) -> None:
        self.app = app
        self.keys = keys
        self.public_paths = frozenset(public_paths)
        self.admin_prefixes = tuple(admin_prefixes)

    def _is_admin_path(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.admin_prefixes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.keys.enabled:
            state["caller"] = Caller()
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        token = presented_key(scope)
        entry = self.keys.lookup(token) if token else None
        if entry is None:
            if path in self.public_paths:
                await self.app(scope, receive, send)
                return
            reason = "missing" if token is None else "unknown"
            log.info("auth: %s API key for %s %s", reason, scope.get("method", ""), path)
            how = "'x-goog-api-key: <key>'" if error_shapes.is_gemini(path) else "'x-api-key: <key>'"
            msg = (
                f"missing API key: send 'Authorization: Bearer <key>' or {how}"
                if token is None
                else "invalid API key"  # never echo what was presented
            )
            await self._deny(scope, send, errors.Unauthorized(msg), {"www-authenticate": "Bearer"})
            return
        if not entry.admin and self._is_admin_path(path):
            log.info("auth: key %s (not admin) refused on %s", entry.key_id, path)
            await self._deny(scope, send, errors.Forbidden("this API key is not an admin key"))
            return
        state["caller"] = entry.caller()
        await self.app(scope, receive, send)

    async def _deny(
        self, scope: Scope, send: Any, err: errors.ThinkgateError, headers: Mapping[str, str] | None = None
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(send, err, headers, path=scope.get("path", ""))


def caller_of(scope: Mapping[str, Any]) -> Caller:
    """The Caller the auth middleware left in the request's scope state (an anonymous
    Caller when none: a route reached without the middleware, as in some tests)."""
    state = scope.get("state") or {}
    caller = state.get("caller") if isinstance(state, dict) else None
    return caller if isinstance(caller, Caller) else Caller()
