"""Reading the log's extent: partitions and their first and next offsets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.backoff import Backoff
from streams.settings import StreamsSettings


def client_options(target: str | StreamsSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for a bootstrap address, or for the configured broker
    with its security settings (StreamsSettings.kafka_options)."""
    if isinstance(target, StreamsSettings):
        return {"bootstrap_servers": target.require_kafka(), **target.kafka_options()}
    return {"bootstrap_servers": target}


_UNKNOWN_TOPIC_OR_PARTITION = 3  # the Kafka protocol's error code: the topic does not exist
_DESCRIBE_ATTEMPTS = 5
# 0.2, 0.4, 0.6, 0.8 s between them: about two seconds in all.
_DESCRIBE_BACKOFF = Backoff(base_s=0.2, cap_s=0.8, jitter="none", growth="linear")


@asynccontextmanager
async def standalone_consumer(bootstrap: str | StreamsSettings) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any group (for offset look-ups and reading topics)."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        yield consumer
    finally:
        # Let the coordinator's background task start before stopping it: stopping a
        # group-less consumer right after start raises CancelledError (aiokafka #647).
        await asyncio.sleep(0)
        await consumer.stop()


async def partitions_of(
    bootstrap: str | StreamsSettings, topics: Iterable[str]
) -> list[TopicPartition]:
    """The partitions of existing topics among `topics` (missing topics have none).

    A topic the broker reports with another error (a leader election in progress right
    after creation) is asked about again, briefly: leaving its partitions out would make
    a caller believe the log is shorter than it is."""
    wanted = list(topics)
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        async for _ in _DESCRIBE_BACKOFF.attempts(_DESCRIBE_ATTEMPTS):
            described = await admin.describe_topics(wanted)
            if all(t["error_code"] in (0, _UNKNOWN_TOPIC_OR_PARTITION) for t in described):
                break
    finally:
        await admin.close()
    return sorted(
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        if topic["error_code"] == 0
        for p in topic["partitions"]
    )


async def log_extent(
    bootstrap: str | StreamsSettings, topics: Iterable[str]
) -> dict[tuple[str, int], tuple[int, int]]:
    """(first offset, next offset) of every partition of the given physical topics."""
    partitions = await partitions_of(bootstrap, topics)
    if not partitions:
        return {}
    async with standalone_consumer(bootstrap) as consumer:
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    return {(tp.topic, tp.partition): (starts[tp], ends[tp]) for tp in partitions}
