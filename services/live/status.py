"""What `memstream projections status` shows of the live processor: its consumer group's
lag on the live topic, and what it holds (calls with prefetches, prefetch rows)."""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from psycopg import AsyncConnection

from projections.live import prefetch_counts
from services.settings import Settings
from streams.offsets import log_extent
from streams.topics import LIVE, Topics

__all__ = ["live_status"]


async def live_status(settings: Settings, conn: AsyncConnection[Any]) -> dict[str, Any]:
    """The live processor's lag per partition of the live topic (log end minus the group's
    committed offset; the log start when it has none) and its read model's size."""
    group = f"{settings.topic_prefix}.live"  # services.live.worker.app_id, without faust
    topic = Topics(settings.topic_prefix).name(LIVE)
    extent = await log_extent(settings, [topic])
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.require_kafka(), **settings.kafka_options()
    )
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    done = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
    partitions = []
    for (name, partition), (start, end) in sorted(extent.items()):
        offset = done.get((name, partition))
        checkpoint = offset if offset is not None and offset >= 0 else None
        lag = max(0, end - (start if checkpoint is None else checkpoint))
        partitions.append(
            {"partition": partition, "log_end": end, "committed": checkpoint, "lag": lag}
        )
    calls, rows = await prefetch_counts(conn)
    return {
        "group": group,
        "topic": topic,
        "lag": sum(p["lag"] for p in partitions),
        "partitions": partitions,
        "calls_with_prefetches": calls,
        "prefetches": rows,
    }
