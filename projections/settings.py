"""The projections' settings: the providers their processors call, and summaries."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from projections.embeddings.models import is_local
from streams.exceptions import ConfigurationError
from streams.settings import StreamsSettings


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL (e.g. https://api.openai.com/v1)")
    return value


class ProjectionSettings(StreamsSettings):
    """The streams section, and what the processors (extraction, embeddings, summaries)
    call and how."""

    # Providers (projections/providers): an OpenAI-compatible endpoint for the LLM
    # extractor and for embeddings. An empty model name keeps the offline path (the
    # rule-based extractor, the local embedding model), so nothing here is required.
    # None means OpenAI's own endpoint; any OpenAI-compatible URL works (vLLM, Ollama...).
    openai_base_url: Annotated[str | None, AfterValidator(_http_url)] = None
    # Kept out of repr so a logged Settings never shows it.
    openai_api_key: str | None = Field(default=None, repr=False)
    llm_model: str = ""
    embedding_model: str = ""
    # One attempt's time limit, and attempts after the first (with backoff and jitter).
    provider_timeout_s: float = Field(default=10.0, gt=0)
    provider_retries: int = Field(default=3, ge=0)
    # Requests sent to the LLM at the same time, by the extractor and the summariser each.
    provider_concurrency: int = Field(default=4, ge=1)
    # Consecutive failed calls that open a provider's circuit breaker, and how long it
    # stays open before one trial call is let through.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=30.0, gt=0)

    # Summaries: the minimum log time between two profile summaries of one user
    # (projections/summaries/processor.py: the debounce).
    summary_debounce_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _remote_models_need_a_key(self) -> Self:
        remote_embeddings = not is_local(self.embedding_model)
        if (self.llm_model or remote_embeddings) and not (
            self.openai_api_key or self.openai_base_url
        ):
            raise ConfigurationError(
                "MEMSTREAM_LLM_MODEL / MEMSTREAM_EMBEDDING_MODEL name a remote model but"
                " MEMSTREAM_OPENAI_API_KEY is not set: OpenAI's endpoint needs a key (set"
                " MEMSTREAM_OPENAI_BASE_URL for a compatible server that needs none)"
            )
        return self


def section(settings: StreamsSettings) -> ProjectionSettings:
    """`settings` as the projections' section. `Projection.from_settings` (streams) takes
    the streams section; what builds projections (`projections.build`, the CLI) hands
    them the whole settings, which include this section."""
    if not isinstance(settings, ProjectionSettings):
        raise TypeError(
            f"a processor needs the projections' settings (ProjectionSettings), not"
            f" {type(settings).__name__}"
        )
    return settings
