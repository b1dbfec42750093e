"""How a prompt is routed: the model aliases (`routes:`), the difficulty
classifier, Self-Ref escalation, and conversation routing with the joint policy
and reasoning effort (`routing:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from router.settings.section import Section


class RouteSettings(Section):
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


class JointSettings(Section):
    """The joint policy (policies.joint), fitted by `thinkgate calibrate joint`:
    reason at once when P >= p_hi, else answer fast and escalate when the
    answer's confidence < thresholds[bin of P] + slope * P (bins split at `edges`)."""

    p_hi: float = Field(ge=0)
    edges: list[float] = Field(default_factory=list)
    thresholds: list[float] = Field(min_length=1)
    slope: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _shape(self) -> JointSettings:
        if len(self.thresholds) != len(self.edges) + 1:
            raise ValueError(f"routing.joint: {len(self.edges)} edges need {len(self.edges) + 1} thresholds")
        if self.edges != sorted(self.edges) or (self.slope == 0 and any(t < 0 for t in self.thresholds)):
            raise ValueError("routing.joint: edges must ascend and thresholds be >= 0")
        return self


class EffortStep(Section):
    """Reasoning effort for prompts with P below `below` (the first step that applies)."""

    below: float = Field(gt=0, le=1.0001)
    deer_threshold: float | None = Field(None, ge=0, le=1, description="DEER's exit confidence")
    thinking_tokens: int | None = Field(None, ge=1, description="thinking budget in tokens")


class AgentSettings(Section):
    """Agent loops (policies.agent_turn): how the turns of one tool loop are routed.

    in_loop keep: a loop's relay and summary turns take the route and model of
    the turn that opened it (state in the conversation store: Redis when one is
    configured, so every replica agrees); a Self-Ref escalation moves the rest
    of the loop up, never down. independent: every turn on its own.
    relay: off; fast: a relay turn that would reason goes to the fast model
    (the model changes mid-loop: opt in only where no client needs signed
    thinking kept); budget: it keeps its model, with `relay_thinking_tokens`
    of thinking (and `relay_deer_threshold`, if set) under DEER."""

    in_loop: Literal["keep", "independent"] = "keep"
    relay: Literal["off", "fast", "budget"] = "off"
    relay_thinking_tokens: int = Field(512, ge=1, description="relay: budget: the thinking budget of a relay turn")
    relay_deer_threshold: float | None = Field(None, ge=0, le=1, description="relay: budget: DEER's exit confidence")


class RoutingSettings(Section):
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
    agent: AgentSettings = Field(default_factory=AgentSettings)

    @field_validator("effort")
    @classmethod
    def _ascending(cls, v: list[EffortStep]) -> list[EffortStep]:
        if [s.below for s in v] != sorted(s.below for s in v):
            raise ValueError("routing.effort: steps must be in ascending order of `below`")
        return v


class ClassifierSettings(Section):
    """The difficulty router (issue 3): encoder + trained classifier."""

    enabled: bool = True
    # a directory under models/, a path, or null (embedder only); unset: the encoder's shipped
    # artifact (static: models/static-default, minilm: models/default)
    artifact: str | None = "static-default"
    # the one vector per request that the classifier, the semantic cache, the decision log and
    # shadow sampling all read (issue 28): static, a model2vec distillation of MiniLM
    # (router/embedding/static.py, ~0.5 ms a prompt), or minilm: the `embedder` runtime below
    # (13-28 ms a prompt int8 on one core). An artifact is trained for one (`calibrate --embedder`).
    encoder: Literal["minilm", "static"] = "static"
    # minilm's runtime: onnx: int8 MiniLM on onnxruntime (exported once to ~/.cache/thinkgate);
    # torch: sentence-transformers; auto: onnx, else torch. hash: no model (tests/demos), either encoder
    embedder: Literal["onnx", "onnx-fp32", "torch", "hash", "auto"] = "auto"
    batch_max: int = Field(16, ge=1)  # throughput flattens past 16 on CPU (bench/routing.py)
    # a batch pads to its longest text and only short prompts gain from batching (router/embedding/batcher.py)
    batch_tokens: int = Field(256, ge=1, description="cap on a batch's padded tokens (estimated)")
    workers: int = Field(1, ge=1, description="batches run at once, each on its own thread (cores for the encoder)")
    threads: int | None = Field(None, ge=1, description="encoder threads; None: half the cores (THINKGATE_ORT_THREADS)")
    batch_wait_ms: float = Field(0.0, ge=0, description="extra wait to grow a batch; 0: batch only what queued up")

    @model_validator(mode="after")
    def _artifact_follows_encoder(self) -> ClassifierSettings:
        # `encoder: minilm` alone serves the MiniLM artifact; an artifact named in the config stays
        if "artifact" not in self.model_fields_set and self.encoder == "minilm":
            self.__dict__["artifact"] = "default"  # not marked as set: a later encoder change follows too
        return self


class SelfRefSettings(Section):
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
