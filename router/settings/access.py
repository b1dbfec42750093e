"""The front door: the server itself, API keys and tenants, rate and size limits,
and the retries and circuit breaker around every upstream (`limits.breaker`).
Read by router/access and router/upstreams/resilient.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from router.settings.section import Section


class ApiKey(Section):
    key: str = Field(repr=False)  # hashed at start-up; the plain key is never logged or echoed
    tenant: str = "default"  # cache and decision-log scope
    admin: bool = False  # may use /dashboard, /admin, /metrics
    aliases: list[str] | None = None  # model aliases this key may call; None: all
    rpm: int | None = Field(None, ge=1)  # overrides limits.rpm for this key
    tpm: int | None = Field(None, ge=1)  # overrides limits.tpm for this key
    controls: list[str] | None = None  # allowed x-thinkgate-* controls; None: all


class AuthSettings(Section):
    """Keys come from here and from THINKGATE_API_KEYS (`key[:tenant[:admin]]`, comma-separated).
    No keys at all: auth is off and every caller is the default (admin) tenant; `thinkgate serve`
    then refuses a host beyond loopback unless `anonymous` is true (router/access/auth.py exposure)."""

    keys: list[ApiKey] = Field(default_factory=list)
    env_var: str = "THINKGATE_API_KEYS"
    # No keys and a host beyond loopback: `thinkgate serve` refuses to start unless this
    # says that anonymous (admin) access is what the operator wants (router/access/auth.py)
    anonymous: bool = False


class BreakerSettings(Section):
    """Retries and the circuit breaker wrapped around every upstream (router.upstreams.resilient)."""

    failures: int = Field(5, ge=1, description="consecutive failed calls that open the breaker")
    failure_rate: float = Field(0.5, gt=0, le=1, description="or this failed share of the last `window` calls")
    window: int = Field(20, ge=2)
    min_calls: int = Field(10, ge=1)
    cooldown_s: float = Field(10.0, gt=0, description="open -> half-open after this long")
    max_cooldown_s: float = Field(60.0, gt=0, description="cooldown doubles on each failed probe, up to this")
    backoff_s: float = Field(0.1, ge=0, description="first retry waits up to this (full jitter), then doubles")
    max_backoff_s: float = Field(2.0, ge=0)


class LimitSettings(Section):
    rpm: int | None = Field(None, ge=1)  # per key, default; None: unlimited
    tpm: int | None = Field(None, ge=1)
    window_s: int = Field(60, ge=1, description="rate-limit window (fixed, aligned)")
    redis_url: str | None = None  # None: the cache's redis_url; neither: per-process counters
    redis_timeout_ms: float = Field(100.0, gt=0)
    namespace: str = "thinkgate"
    max_concurrent_streams: int = Field(256, ge=1)  # per process
    max_streams_per_key: int | None = Field(None, ge=1)
    # without max_streams_per_key: the share of max_concurrent_streams one API key may hold
    stream_share: float = Field(0.75, gt=0, le=1)
    max_messages: int = Field(512, ge=1)
    max_n: int = Field(8, ge=1, le=128, description="choices per request (n); each is an upstream call")
    max_tokens: int = Field(32_768, ge=1)
    # a request over max_tokens: clamp it to the limit (said in `x-thinkgate-clamped`; agents
    # such as Claude Code ask for 128000 whatever the model) or refuse it with a 400
    over_max_tokens: Literal["clamp", "refuse"] = "clamp"
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # a client that sends its body slower than this between two reads gets 408 (slow-body
    # attacks would otherwise hold a connection and its task forever)
    body_timeout_s: float = Field(30.0, gt=0)
    drain_s: float = Field(30.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # the name of the thinking in replies: DeepSeek's (most SDKs read it) or vLLM >= 0.16's
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    # the client's end-user id (`user`, Anthropic's metadata.user_id) as upstreams get it:
    # hashed (keyed SHA-256), as_is, or drop (router/upstreams/user_field.py)
    upstream_user: Literal["hashed", "as_is", "drop"] = "hashed"
    upstream_user_key: str = Field("thinkgate", repr=False, min_length=1, description="the hash's key; set a secret")
