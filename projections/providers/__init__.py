"""Remote model providers behind the OpenAI wire format, and what makes them safe to call.

- ``resilience``: retries with exponential backoff and full jitter, a circuit breaker,
  and :class:`~projections.providers.resilience.Resilient`, which combines them;
- ``redaction``: phone numbers, emails and card numbers replaced by typed placeholders
  before text leaves the process;
- ``openai_client``: the ``openai`` client built from
  :class:`projections.settings.ProjectionSettings`;
- ``metrics``: Prometheus metrics of provider calls, fallbacks and breakers;
- ``exceptions``: the errors raised here.

Every remote path has a local one (the rule-based extractor, the local embedding
model) that a caller falls back to when the provider is unavailable.
"""
