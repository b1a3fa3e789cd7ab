"""The ``openai`` client, built from :class:`streams.Settings`, and the resilience around it.

The client's own retries are off (``max_retries=0``): :class:`Resilient` retries, so
that backoff, the circuit breaker and the metrics see every attempt. Its timeout is
``MEMSTREAM_PROVIDER_TIMEOUT_S`` per attempt. Any OpenAI-compatible endpoint works
(``MEMSTREAM_OPENAI_BASE_URL``: OpenAI, Azure's v1 API, vLLM, Ollama, LiteLLM...).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import openai
from openai.types.chat import ChatCompletionMessageParam

from projections.providers.exceptions import InvalidAnswer
from projections.providers.resilience import Backoff, CircuitBreaker, Resilient
from streams.settings import Settings

__all__ = ["PROVIDER", "SEED", "build_client", "resilient", "structured_answer"]

#: The provider label of metrics and breakers for every OpenAI-compatible endpoint.
PROVIDER = "openai"

#: OpenAI's seed: with temperature 0, the best the API offers towards repeatable answers.
SEED = 20260302

# OpenAI's client refuses to start without a key; a compatible local server (Ollama,
# vLLM) ignores it. Only used when a base URL is set and no key is (see Settings).
_NO_KEY = "not-needed"


def build_client(settings: Settings) -> openai.OpenAI:
    """A synchronous client (it runs in worker threads) with no retries of its own."""
    return openai.OpenAI(
        api_key=settings.openai_api_key or _NO_KEY,
        base_url=settings.openai_base_url,
        timeout=settings.provider_timeout_s,
        max_retries=0,
    )


def resilient(settings: Settings, operation: str) -> Resilient:
    """Retries and a breaker for one operation (``chat``, ``embeddings``), from settings.

    Backoff starts at a tenth of the timeout (at least 0.1 s) and is capped at the
    timeout: a provider that is slow to answer is not hammered faster than it answers.
    """
    base = max(0.1, settings.provider_timeout_s / 10)
    return Resilient(
        PROVIDER,
        operation,
        retries=settings.provider_retries,
        backoff=Backoff(base_s=base, cap_s=max(base, settings.provider_timeout_s)),
        breaker=CircuitBreaker(
            PROVIDER,
            operation,
            failures=settings.breaker_failures,
            reset_s=settings.breaker_reset_s,
        ),
    )


class ChatModel:
    """What the LLM extractor and the LLM summariser share: a chat model behind an
    OpenAI-compatible client, its retries and breaker, how many requests of a batch go at
    once, and the name (``llm:<model>``) and prompt version recorded with its results."""

    #: Set by each subclass: what it is (for errors), its provider operation (metrics and
    #: breaker), and the version of its prompt and answer schema.
    role: ClassVar[str]
    operation: ClassVar[str]
    prompt_version: ClassVar[str]

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        calls: Resilient | None = None,
        concurrency: int = 4,
    ) -> None:
        if not model:
            raise ValueError(f"the {self.role} needs a model name")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.client = client
        self.model = model
        self.name = f"llm:{model}"
        self.version = self.prompt_version
        self.calls = calls or Resilient(PROVIDER, self.operation)
        self.concurrency = concurrency

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The model ``MEMSTREAM_LLM_MODEL`` and the provider settings describe."""
        return cls(
            build_client(settings),
            settings.llm_model,
            calls=resilient(settings, cls.operation),
            concurrency=settings.provider_concurrency,
        )


def structured_answer(
    client: openai.OpenAI,
    model: str,
    messages: list[ChatCompletionMessageParam],
    name: str,
    schema: dict[str, Any],
) -> str | None:
    """The content of one chat completion asked for strict JSON-schema output, at
    temperature 0 with :data:`SEED` (one attempt; the caller validates the content)."""
    response = client.chat.completions.create(
        model=model,
        messages=messages,
        temperature=0,
        seed=SEED,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": name, "strict": True, "schema": schema},
        },
    )
    if not response.choices:
        raise InvalidAnswer("the model's answer has no choices")
    return response.choices[0].message.content
