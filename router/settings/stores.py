"""What the gateway keeps between requests: the response cache, the decision log
and the Responses API's stored responses (each Redis or in-process)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from router.settings.section import Section


# The cosine a semantic candidate needs on the routing vector, by routing encoder
# (classifier.encoder) and whether MiniLM takes a second look (cache.semantic_check,
# router/cache/second_look.py). MiniLM alone: 0.95. The static vector alone: 0.95 too (its
# paraphrase recall at 0.95 is MiniLM's or better, but it lets renamed problems through). The
# static vector with the second look: 0.85, low enough that every pair MiniLM finds at 0.95
# is a candidate (bench/semantic_cache.py). The routing vector is the cache's vector, so its
# width is the running encoder's too (router/build.py passes it to build_cache).
SEMANTIC_THRESHOLDS = {("minilm", False): 0.95, ("static", False): 0.95, ("static", True): 0.85}


def default_semantic_check(encoder: str) -> bool:
    """MiniLM takes a second look at candidates unless MiniLM made the vector."""
    return encoder != "minilm"


def default_semantic_threshold(encoder: str, check: bool | None = None) -> float:
    check = default_semantic_check(encoder) if check is None else check
    return SEMANTIC_THRESHOLDS[(encoder, check and encoder != "minilm")]


class CacheSettings(Section):
    """Response cache (router/cache/). redis_url None: the embedded in-process
    backend (not shared between replicas, lost on restart)."""

    enabled: bool = True
    redis_url: str | None = None  # None: embedded in-process backend
    exact: bool = True
    semantic: bool = True
    # unset: the routing encoder's (SEMANTIC_THRESHOLDS above; router/config.py fills it in)
    semantic_threshold: float = Field(0.95, gt=0, le=1)
    # MiniLM confirms a candidate found on a cheaper routing vector (router/cache/second_look.py);
    # unset: on unless the routing encoder is MiniLM (router/config.py fills it in; a
    # CacheSettings on its own, as in tests, has no check)
    semantic_check: bool | None = None
    semantic_check_threshold: float = Field(0.95, gt=0, le=1)
    deterministic_only: bool = True  # cache only temperature 0 unless opted in
    ttl_s: int = Field(3600, ge=1)
    ttl_per_route: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="seconds by route (fast | reasoning) or alias; 0: never store"
    )
    max_entries: int = Field(100_000, ge=1)
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="embedded backend: payload bytes kept")
    max_entry_bytes: int = Field(2 * 1024 * 1024, ge=256, description="larger (compressed) entries are not stored")
    timeout_ms: float = Field(20.0, gt=0, description="per Redis command on the request path")
    connect_timeout_ms: float = Field(1000.0, gt=0, description="background (re)connects")
    max_connections: int = Field(64, ge=1, description="Redis connection pool size per process")
    vector_search: Literal["auto", "local", "redis"] = "auto"  # auto: Redis FT.* when the server has it
    dim: int = Field(384, ge=1, description="embedding dimension; a gateway uses its routing encoder's")
    namespace: str = "thinkgate"


class DecisionLogSettings(Section):
    backend: Literal["auto", "memory", "redis"] = "auto"  # auto: redis when a redis_url is known
    redis_url: str | None = None  # None: in-memory ring (the cache's redis_url if set there)
    stream_key: str = "thinkgate:decisions"
    max_records: int = Field(10_000, ge=10)  # stream trimmed with MAXLEN ~ (approximate)
    timeout_ms: float = Field(250.0, gt=0, description="per XADD (logging runs after the reply); reads get 20x")
    retry_s: float = Field(5.0, ge=0, description="after a Redis failure, use the local ring this long")
    summary_window: int = Field(2000, ge=10, description="records the dashboard summary aggregates")
    store_prompt: bool = False
    prompt_chars: int = Field(200, ge=0)
    store_embedding: bool = False
    slow_request_ms: float | None = Field(
        30_000.0, gt=0, description="a request slower than this logs a warning naming its slowest step (null: never)"
    )


class ResponsesSettings(Section):
    """The Responses API's store (router/cache/stored_responses.py), read by
    previous_response_id and GET /v1/responses/{id}."""

    store: bool = True  # False: never store, whatever a request's `store` says
    ttl_s: int = Field(86400, ge=1, description="seconds a stored response is kept")
    redis_url: str | None = None  # None: the cache's redis_url; neither: in-process
    max_entries: int = Field(10_000, ge=1, description="in-process backend: responses kept")
    timeout_ms: float = Field(250.0, gt=0, description="per Redis command")
    namespace: str = "thinkgate"
    # hosted tools (web_search, file_search, code_interpreter, ...) that a chat upstream
    # cannot run: drop them (named in the decision record; the model answers without them)
    # or refuse the request with a 400; `hosted_tools_by_route` overrides it per route (the request's `model`, a name under `routes:`)
    hosted_tools: Literal["drop", "refuse"] = "drop"
    hosted_tools_by_route: dict[str, Literal["drop", "refuse"]] = Field(default_factory=dict)

    def hosted_tools_policy(self, model: Any) -> str:
        return self.hosted_tools_by_route.get(model, self.hosted_tools) if isinstance(model, str) else self.hosted_tools
