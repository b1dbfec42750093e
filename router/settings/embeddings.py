"""/v1/embeddings (router/api/embeddings.py): the model names clients send and
the model behind each."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from router.settings.section import Section


class EmbeddingModelSettings(Section):
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


class EmbeddingsSettings(Section):
    """/v1/embeddings: model names clients send -> the model that embeds."""

    enabled: bool = True
    # a key may be a pattern (router/settings/aliases.py). A name that no key serves but
    # that names a chat route or model (`auto`, `claude-*`'s names: clients that send one
    # model name for everything) gets the first model listed here
    models: dict[str, EmbeddingModelSettings] = Field(
        default_factory=lambda: {"all-MiniLM-L6-v2": EmbeddingModelSettings(provider="local")}
    )
    max_inputs: int = Field(2048, ge=1, description="inputs per request (OpenAI's limit)")
    # the local model's per-request budget: the characters of all inputs together (each
    # input is read up to 8,000 characters anyway: the model reads 256 word pieces)
    max_local_chars: int = Field(1_200_000, ge=1, description="characters per request for the local model (OpenAI allows ~300k tokens)")
