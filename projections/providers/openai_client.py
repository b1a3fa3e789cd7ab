"""The ``openai`` client, built from :class:`projections.settings.ProjectionSettings`,
and the resilience around it.

The client's own retries are off (``max_retries=0``): :class:`Resilient` retries, so
that backoff, the circuit breaker and the metrics see every attempt. Its timeout is
``MEMSTREAM_PROVIDER_TIMEOUT_S`` per attempt. Any OpenAI-compatible endpoint works
(``MEMSTREAM_OPENAI_BASE_URL``: OpenAI, Azure's v1 API, vLLM, Ollama, LiteLLM...).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, ClassVar, Self, TypeVar

import openai
from openai.types.chat import ChatCompletionMessageParam

from projections.providers.exceptions import InvalidAnswer
from projections.providers.resilience import Backoff, CircuitBreaker, Resilient
from projections.settings import ProjectionSettings

__all__ = ["PROVIDER", "SEED", "build_client", "resilient", "structured_answer"]

#: The provider label of metrics and breakers for every OpenAI-compatible endpoint.
PROVIDER = "openai"

#: OpenAI's seed: with temperature 0, the best the API offers towards repeatable answers.
SEED = 20260302

# OpenAI's client refuses to start without a key; a compatible local server (Ollama,
# vLLM) ignores it. Only used when a base URL is set and no key is (see ProjectionSettings).
_NO_KEY = "not-needed"

_T = TypeVar("_T")
_R = TypeVar("_R")


def build_client(settings: ProjectionSettings) -> openai.OpenAI:
    """A synchronous client (it runs in worker threads) with no retries of its own."""
    return openai.OpenAI(
        api_key=settings.openai_api_key or _NO_KEY,
        base_url=settings.openai_base_url,
        timeout=settings.provider_timeout_s,
        max_retries=0,
    )


def resilient(settings: ProjectionSettings, operation: str) -> Resilient:
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
    OpenAI-compatible client, its retries and breaker, how its calls run concurrently, and
    the name (``llm:<model>``) and prompt version recorded with its results.

    Calls are blocking (the synchronous ``openai`` client, and the backoff sleeps). They
    run in the model's own pool of ``concurrency`` threads, started on first use and kept
    for the model's life (idle threads cost nothing; :meth:`close` releases them):
    :meth:`map_calls` for a batch asked from a worker thread (the extractor, in the
    runtime's ``prepare``), :meth:`run_call` for one call awaited from the event loop (the
    summariser, whose batches are gathered). So at most ``concurrency`` requests of a
    model are in flight, whichever way they are asked for.
    """

    #: Set by each subclass: what it is (for errors), its provider operation (metrics and
    #: breaker), the version of its prompt and answer schema, and the name prefix of its
    #: pool's threads.
    role: ClassVar[str]
    operation: ClassVar[str]
    prompt_version: ClassVar[str]
    thread_name_prefix: ClassVar[str]

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
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Marks the pool's own threads: a batch asked from one of them runs inline, never
        # waiting on the (bounded) pool it occupies.
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: ProjectionSettings) -> Self:
        """The model ``MEMSTREAM_LLM_MODEL`` and the provider settings describe."""
        return cls(
            build_client(settings),
            settings.llm_model,
            calls=resilient(settings, cls.operation),
            concurrency=settings.provider_concurrency,
        )

    def map_calls(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``fn`` of each item, in the items' order, up to ``concurrency`` at a time in the
        model's pool (blocking: call it from a worker thread, not the event loop).

        One item, ``concurrency == 1``, or a call from the pool's own threads runs inline.
        The first exception in the items' order is raised once the calls already running
        have finished; those not started yet are cancelled.
        """
        if len(items) <= 1 or self.concurrency == 1 or self._on_pool_thread():
            return [fn(item) for item in items]
        pool = self._executor()
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            wait(futures)
            raise

    async def run_call(self, fn: Callable[[], _R]) -> _R:
        """``fn()`` in the model's pool, awaited: the event loop stays free meanwhile, and
        calls awaited together run up to ``concurrency`` at a time."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), fn)

    def close(self) -> None:
        """Waits for the calls in flight and stops the pool's threads (a later call starts
        a new pool)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency,
                    thread_name_prefix=self.thread_name_prefix,
                    # Not a bound method: the threads must not keep the model (and so the
                    # pool) alive once it is dropped.
                    initializer=_mark_pool_thread,
                    initargs=(self._local,),
                )
            return self._pool

    def _on_pool_thread(self) -> bool:
        return getattr(self._local, "in_pool", False) is True


def _mark_pool_thread(local: threading.local) -> None:
    local.in_pool = True


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
