"""The log: topics, the producer, and the projection runtime (consumer groups,
checkpoints in PostgreSQL, batching, retries, DLQ, versioned rebuilds)."""

from streams.exceptions import (
    BrokerUnavailable,
    ConfigurationError,
    DatabaseUnavailable,
    RecordTooLarge,
)
from streams.producer import EventLog, LogPosition
from streams.projection import LogRecord, Projection
from streams.runtime import ProjectionRunner
from streams.settings import StreamsSettings
from streams.topics import Topics, ensure_topics

__all__ = [
    "BrokerUnavailable",
    "ConfigurationError",
    "DatabaseUnavailable",
    "EventLog",
    "LogPosition",
    "LogRecord",
    "Projection",
    "ProjectionRunner",
    "RecordTooLarge",
    "StreamsSettings",
    "Topics",
    "ensure_topics",
]
