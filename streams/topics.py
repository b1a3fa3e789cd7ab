"""memstream's topics: their names, their configs, and their idempotent creation.

Every topic has the same partition count and the same key (the event ``subject``), so
one user's events across topics live on the same partition number (co-partitioning).
Every topic but the live one keeps its events forever: the conversations topic is the
source of truth, and the derived topics (memories, embeddings, summaries) hold the results of
model calls that a rebuild must replay instead of calling the model again. The audit
topic (``streams.audit``: who read whose data, by subject hash) is kept forever too: an
audit trail that expires cannot answer for the reads it no longer holds, and the audit
read model is rebuilt from it. The live topic (mid-call turns and signals, the live
processor's prefetches: services/live) keeps them for ``MEMSTREAM_LIVE_RETENTION_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from streams.exceptions import BrokerUnavailable, ConfigurationError
from streams.settings import StreamsSettings

logger = logging.getLogger(__name__)

# Logical names, as event classes declare them (``Event.topic``).
CONVERSATIONS = "conversations"
MEMORIES = "memories"
EMBEDDINGS = "embeddings"
SUMMARIES = "summaries"
DLQ = "dlq"
AUDIT = "audit"
LIVE = "live"
LOGICAL_TOPICS = (CONVERSATIONS, MEMORIES, EMBEDDINGS, SUMMARIES, DLQ, AUDIT, LIVE)

_METADATA_WAIT_S = 30.0

TOPIC_CONFIG = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
    # A 1 MB default would reject long call transcripts.
    "max.message.bytes": str(8 * 1024 * 1024),
}


def topic_config(logical: str, settings: StreamsSettings) -> dict[str, str]:
    """A topic's configuration at creation: kept forever, except the live topic's mid-call
    events (``MEMSTREAM_LIVE_RETENTION_S``; the post-call report is the call's record)."""
    if logical == LIVE:
        return {**TOPIC_CONFIG, "retention.ms": str(int(settings.live_retention_s * 1000))}
    return TOPIC_CONFIG


@dataclass(frozen=True)
class Topics:
    """Physical topic names under one prefix (tests use a prefix of their own)."""

    prefix: str

    def name(self, logical: str) -> str:
        if logical not in LOGICAL_TOPICS:
            raise ConfigurationError(f"unknown topic {logical!r}; known: {LOGICAL_TOPICS}")
        return f"{self.prefix}.{logical}"

    def logical(self, physical: str) -> str:
        prefix, _, logical = physical.rpartition(".")
        if prefix != self.prefix or logical not in LOGICAL_TOPICS:
            raise ConfigurationError(f"{physical!r} is not a topic under prefix {self.prefix!r}")
        return logical

    @property
    def conversations(self) -> str:
        return self.name(CONVERSATIONS)

    @property
    def dlq(self) -> str:
        return self.name(DLQ)

    @property
    def audit(self) -> str:
        return self.name(AUDIT)

    def all(self) -> list[str]:
        return [self.name(logical) for logical in LOGICAL_TOPICS]


async def _described_with_leaders(
    admin: AIOKafkaAdminClient, names: list[str], wait: bool
) -> list[dict[str, Any]]:
    """Describe the topics; with ``wait``, until every partition has a leader.

    A topic just created is not at once in the broker's metadata. A consumer that
    subscribes in that window is assigned no partitions, and aiokafka only looks
    again at the next metadata refresh (minutes later): so creation is complete
    only when the metadata shows the partitions with their leaders.
    """
    deadline = time.monotonic() + _METADATA_WAIT_S
    while True:
        described: list[dict[str, Any]] = list(await admin.describe_topics(names))
        ready = all(
            topic.get("error_code", 0) == 0
            and topic.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in topic["partitions"])
            for topic in described
        )
        if ready or not wait or time.monotonic() > deadline:
            return described
        await asyncio.sleep(0.1)


async def ensure_topics(settings: StreamsSettings) -> list[str]:
    """Create missing topics; check existing ones have the configured partition count.

    Returns the names created. Raises BrokerUnavailable when the broker cannot be reached
    and ConfigurationError when an existing topic breaks co-partitioning.
    """
    bootstrap = settings.require_kafka()
    topics = Topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **settings.kafka_options()
    )
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        raise BrokerUnavailable(bootstrap, str(exc)) from exc
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics.all() if name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=name,
                        num_partitions=settings.partitions,
                        replication_factor=settings.replication_factor,
                        topic_configs=topic_config(topics.logical(name), settings),
                    )
                    for name in missing
                ]
            )
            for name, code, *message in response.topic_errors:
                if code == 0:
                    created.append(name)
                    logger.info("created topic %s (%d partitions)", name, settings.partitions)
                elif code != TopicAlreadyExistsError.errno:  # a concurrent creator won the race
                    raise BrokerUnavailable(
                        bootstrap, f"creating {name} failed with error {code}: {message}"
                    )
        described = await _described_with_leaders(admin, topics.all(), bool(created))
        for topic in described:
            count = len(topic.get("partitions", []))
            if count and count != settings.partitions:
                raise ConfigurationError(
                    f"topic {topic['topic']} has {count} partitions but MEMSTREAM_PARTITIONS is "
                    f"{settings.partitions}; all memstream topics must have the same count so a "
                    "user's events stay co-partitioned"
                )
    except KafkaError as exc:
        raise BrokerUnavailable(bootstrap, f"{type(exc).__name__}: {exc}") from exc
    finally:
        await admin.close()
    return created
