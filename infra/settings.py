"""The local infrastructure's settings: used only when an endpoint is not configured."""

from __future__ import annotations

from streams.settings import StreamsSettings


class InfraSettings(StreamsSettings):
    """The streams section, and the local broker and database `infra.local` starts under
    `home` when MEMSTREAM_KAFKA_BOOTSTRAP / MEMSTREAM_DATABASE_URL are unset."""

    local_kafka_port: int = 19092
    local_postgres_port: int = 15432
    # The local broker's JVM heap.
    kafka_heap: str = "768m"
