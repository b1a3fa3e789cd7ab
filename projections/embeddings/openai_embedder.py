"""Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint.

:class:`OpenAIEmbedder` sends texts in batches of up to :data:`BATCH_SIZE` per request,
PII-redacted first (``projections.providers.redaction``), through
:class:`~projections.providers.resilience.Resilient` (timeout, retries with backoff and
jitter, circuit breaker). Vectors are L2-normalised (OpenAI's already are; other
servers' may not be) and checked: one per input, all of the same length, finite and
non-zero. Its recorded model name is ``openai/<model>``; the dimension is learnt from the
first answer and every later answer must match it.

When the provider is unavailable it raises
:class:`~projections.providers.exceptions.ProviderUnavailable`: the embedding processor
then embeds the batch with the local model and labels those vectors with the local
model's name (a vector is always recorded with the model that made it).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np
import openai

from projections.providers.exceptions import InvalidAnswer
from projections.providers.openai_client import PROVIDER, build_client, resilient
from projections.providers.redaction import redact
from projections.providers.resilience import Resilient
from projections.settings import ProjectionSettings

__all__ = ["BATCH_SIZE", "OPERATION", "OpenAIEmbedder"]

#: Inputs per request (OpenAI accepts up to 2048; smaller requests fail and retry cheaper).
BATCH_SIZE = 256
#: The operation label of metrics and of the circuit breaker.
OPERATION = "embeddings"


class OpenAIEmbedder:
    """An OpenAI-compatible embedding model, as ``openai/<model>``."""

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        calls: Resilient | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if not model:
            raise ValueError("the OpenAI embedder needs a model name")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.client = client
        self.model = model
        self.name = f"openai/{model}"
        #: Learnt from the first answer (0 until then); every answer must keep it.
        self.dimension = 0
        self.calls = calls or Resilient(PROVIDER, OPERATION)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ProjectionSettings) -> OpenAIEmbedder:
        """The embedder ``MEMSTREAM_EMBEDDING_MODEL`` and the provider settings describe."""
        return cls(
            build_client(settings), settings.embedding_model, calls=resilient(settings, OPERATION)
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, in order; raises ``ProviderUnavailable`` when the
        provider gives none (then no vector of this call is used)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [redact(t) for t in texts[start : start + self.batch_size]]
            vectors.extend(self.calls.call(functools.partial(self._request, chunk)))
        return vectors

    def _request(self, texts: list[str]) -> list[list[float]]:
        response = self.client.embeddings.create(
            model=self.model, input=texts, encoding_format="float"
        )
        data = sorted(response.data, key=lambda d: d.index)
        if [d.index for d in data] != list(range(len(texts))):
            raise InvalidAnswer(f"{len(data)} embeddings for {len(texts)} inputs")
        matrix = np.asarray([d.embedding for d in data], dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise InvalidAnswer("the embeddings are not vectors of one length")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if not np.all(np.isfinite(matrix)) or np.any(norms == 0):
            raise InvalidAnswer("an embedding is zero or not finite")
        with self._lock:
            if self.dimension == 0:
                self.dimension = int(matrix.shape[1])
            elif matrix.shape[1] != self.dimension:
                raise InvalidAnswer(
                    f"{self.name} answered {matrix.shape[1]} dimensions, earlier {self.dimension}"
                )
        unit: list[list[float]] = (matrix / norms).tolist()
        return unit
