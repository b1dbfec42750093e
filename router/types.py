"""Leaf module: the request, control and decision records every layer shares.

Nothing here does I/O or imports another thinkgate module, so `policies`,
`calibrate` and `router` can all depend on it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Route = Literal["fast", "reasoning"]
Endpoint = Literal["chat", "completion"]
CacheKind = Literal["miss", "exact", "semantic", "bypass", "off"]

ROUTES: tuple[Route, ...] = ("fast", "reasoning")


@dataclass(frozen=True)
class CacheControl:
    no_cache: bool = False  # do not read the cache for this request
    no_store: bool = False  # do not write the response to the cache
    max_age: int | None = None  # accept only entries younger than this (seconds)
    opt_in: bool = False  # cache this request even though it is not deterministic
    scope: str | None = None  # entries only for this agent session (policies.agent_turn)


@dataclass(frozen=True)
class DeerControl:
    enabled: bool = True
    threshold: float | None = None  # None: the model's configured threshold
    budget_tokens: int | None = None  # thinking tokens; None: deer.thinking_budget x max_tokens
    thinking_tokens: int | None = None  # a cap on the thinking budget (routing.effort, the request's effort)


@dataclass(frozen=True)
class Controls:
    """Per-request controls (x-thinkgate-* headers or extra_body["thinkgate"])."""

    force_route: Route | None = None
    cache: CacheControl = CacheControl()
    deer: DeerControl = DeerControl()
    selfref_threshold: float | None = None
    debug: bool = False
    reasoning_field: str | None = None  # "reasoning_content" | "reasoning"; None: the configured one


@dataclass
class Caller:
    """Who is calling: filled by auth; the default when no keys are configured."""

    tenant: str = "default"
    key_id: str | None = None  # a short non-secret id of the API key, never the key
    admin: bool = True
    aliases: frozenset[str] | None = None  # None: every alias
    # set by the rate limiter when the key has a token limit: the pipeline leaves its
    # decisions here, and their token counts are what the limiter charges (streams too)
    meter: Meter | None = field(default=None, compare=False, repr=False)


@dataclass(eq=False)
class Meter:
    """The decisions one HTTP request's pipeline made (router/access/middleware.py reads
    their token counts once the response is sent)."""

    decisions: list[Any] = field(default_factory=list)

    def tokens(self) -> int | None:
        if not self.decisions:
            return None
        return sum(int(d.prompt_tokens or 0) + int(d.completion_tokens or 0) for d in self.decisions)


@dataclass
class ChatRequest:
    """A parsed, validated OpenAI request.

    `body` keeps every OpenAI field the client sent (tools, response_format, ...)
    minus thinkgate's own keys, so upstreams can pass them through untouched.
    Completions requests keep `prompt`; `messages` then holds the prompt as one
    user turn so routing, embedding and caching treat both endpoints alike.
    """

    endpoint: Endpoint
    alias: str
    body: dict[str, Any]
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    controls: Controls = Controls()
    caller: Caller = field(default_factory=Caller)
    prompt: str | None = None
    # request headers for rules and the conversation id (lower-case names; credentials dropped)
    headers: dict[str, str] = field(default_factory=dict)
    # fields the front end accepted but did not send upstream (they do not change the
    # answer: cache hints, display options, client metadata), named for the decision record
    dropped: list[str] = field(default_factory=list)
    # "max_tokens REQUESTED -> SENT (WHY)" when a max_tokens over a limit was clamped
    clamped: str | None = None
    rule: str | None = None  # the operator rule that matched (router/pipeline/rules.py); part of the cache key
    # the front end that took it (chat | completions | responses | messages); "" = from `endpoint`
    api: str = ""
    parse_ms: float = 0.0  # the front end's parse, the first step of the decision's timings

    def upstream_body(self, model: str, **overrides: Any) -> dict[str, Any]:
        body = dict(self.body)
        body["model"] = model
        body.update(overrides)
        return body


def new_id(prefix: str = "tg") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


@dataclass
class DeerStats:
    probes: int = 0
    exit_step: int | None = None  # index of the transition at which thinking stopped
    reason: str = ""  # confident | budget | max_probes | wall_clock | natural_end | off | error
    thinking_tokens: int = 0
    probe_tokens: int = 0
    answer_tokens: int = 0
    confidence: float | None = None
    kept_thinking_tokens: int = 0  # of thinking_tokens, those kept (before the exit's transition)
    family: str = ""  # the scoring rule (generic | qwen3 | deepseek-r1)
    probe_kind: str = ""  # math | choice | text
    kind_source: str = ""  # setting | boxed_instruction | response_format | guess
    probe_temperature: float | None = None  # None: the server's default
    probe_ms: float = 0.0  # wall time of the probes (on the request's path in sequential mode)
    sequential: bool = False  # probes paused thinking (their time is a step of its own)

    def header(self) -> str:
        step = "-" if self.exit_step is None else str(self.exit_step)
        return (
            f"reason={self.reason or 'none'}; probes={self.probes}; exit_step={step}; "
            f"thinking_tokens={self.thinking_tokens}; probe_tokens={self.probe_tokens}"
        )


@dataclass
class Decision:
    """One record per request: what was decided, why, and what it cost."""

    id: str = field(default_factory=lambda: new_id("req"))
    created: float = field(default_factory=time.time)
    tenant: str = "default"
    alias: str = ""
    endpoint: Endpoint = "chat"
    api: str = "chat"  # the front end: chat | completions | responses | messages
    stream: bool = False
    n: int = 1  # choices asked for
    fanout: bool = False  # n > 1 answered by n concurrent upstream calls (not the upstream's own n)
    route: Route | Literal["cache", "none"] = "none"
    reason: str = ""  # forced | alias | default | classifier | escalated | fallback | cache | sticky | loop | relay | rule
    difficulty: float | None = None
    threshold: float | None = None
    escalated: bool = False
    confidence: float | None = None
    selfref_threshold: float | None = None
    selfref_mode: str | None = None
    selfref_tokens: int | None = None  # selfref.stream prefix:K: the tokens it was judged on
    deer: DeerStats | None = None
    cache: CacheKind = "off"
    similarity: float | None = None
    upstream: str | None = None  # configured upstream name
    upstream_model: str | None = None
    fallback_from: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    routing_ms: float = 0.0
    upstream_ms: float = 0.0
    total_ms: float = 0.0
    cost: float = 0.0
    baseline_cost: float = 0.0  # what the always-reasoning route would have cost
    status: int = 200
    error: str | None = None
    prompt: str | None = None  # only when config enables prompt logging (truncated)
    embedding: list[float] | None = None  # only when config enables it (for replay)
    artifact: str | None = None  # the classifier artifact's version (router/learning/slot.py)
    rule: str | None = None  # the operator rule that fired (policies.rules)
    conversation: str | None = None  # the conversation's id (a hash) when routing.conversation is on
    sticky: bool = False  # the conversation's earlier route decided this turn's
    turn: str | None = None  # chat | task | relay | summary (policies.agent_turn)
    session: str | None = None  # an agent turn's session id (a hash), for the dashboard
    dropped: list[str] | None = None  # request fields accepted but not sent upstream (ChatRequest.dropped)
    alias_pattern: str | None = None  # the `routes:` pattern that served `alias` (router/settings/aliases.py)
    clamped: str | None = None  # max_tokens clamped to a limit (ChatRequest.clamped)
    # where the time went: step name -> ms, in order (parse, cache, embed, classify,
    # "upstream <model>" per call, "deer probes", "other"); they add up to total_ms
    steps: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # dataclasses.asdict deep-copies recursively and cost ~0.3 ms per request
        # (measured); every field here is a scalar except these two.
        d = dict(self.__dict__)
        if self.deer is not None:
            d["deer"] = dict(self.deer.__dict__)
        if self.embedding is not None:
            d["embedding"] = list(self.embedding)
        if self.dropped is not None:
            d["dropped"] = list(self.dropped)
        d["steps"] = dict(self.steps)
        return d

    def reason_code(self) -> str:
        """A short code for why this route: the reason, qualified by the comparison
        that made it (README "Reading a decision" lists them)."""
        if self.reason == "classifier" and self.difficulty is not None and self.threshold is not None:
            code = "difficulty-above-threshold" if self.difficulty >= self.threshold else "difficulty-below-threshold"
            if self.confidence is not None and self.selfref_threshold is not None:
                code += ",confident"  # Self-Ref judged the fast answer and kept it
            return code
        if self.reason == "escalated":
            if self.confidence is None:
                return "escalated-no-logprobs"
            return "escalated-low-confidence"
        return self.reason or "none"

    def headers(self) -> dict[str, str]:
        route = self.route if self.route != "none" else "fast"
        h = {
            "x-thinkgate-request-id": self.id,
            "x-thinkgate-route": route,
            "x-thinkgate-difficulty": "" if self.difficulty is None else f"{self.difficulty:.4f}",
            "x-thinkgate-escalated": "true" if self.escalated else "false",
            "x-thinkgate-cache": self.cache if self.cache in ("miss", "exact", "semantic") else "miss",
            "x-thinkgate-deer": self.deer.header() if self.deer else "off",
            "x-thinkgate-overhead-ms": f"{self.routing_ms:.2f}",
        }
        if self.confidence is not None:
            h["x-thinkgate-confidence"] = f"{self.confidence:.4f}"
        # the figures were compared with these: a decision reads without the YAML
        if self.threshold is not None:
            h["x-thinkgate-threshold"] = f"{self.threshold:.4f}"
        if self.selfref_threshold is not None:
            h["x-thinkgate-selfref-threshold"] = f"{self.selfref_threshold:.4f}"
        h["x-thinkgate-reason"] = self.reason_code()
        if self.similarity is not None:
            h["x-thinkgate-similarity"] = f"{self.similarity:.4f}"
        if self.upstream_model:
            h["x-thinkgate-model"] = self.upstream_model
        if self.fallback_from:
            h["x-thinkgate-fallback"] = self.fallback_from
        if self.artifact:
            h["x-thinkgate-router"] = self.artifact
        if self.rule:
            h["x-thinkgate-rule"] = self.rule
        if self.turn:
            h["x-thinkgate-turn"] = self.turn
        if self.session:
            h["x-thinkgate-agent-session"] = self.session
        if self.clamped:
            h["x-thinkgate-clamped"] = self.clamped
        if self.conversation:
            h["x-thinkgate-conversation"] = self.conversation
            h["x-thinkgate-sticky"] = "true" if self.sticky else "false"
        return h
