"""Checkpoint rows: the next offset to project, per projection version and partition.

They live in ``memstream.checkpoints`` and change only inside the transaction that
applies the records they cover; that is what makes a projection's effects
exactly-once over Kafka's at-least-once delivery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg import AsyncConnection

TopicPartition = tuple[str, int]


async def lock(
    conn: AsyncConnection[Any], projection: str, version: int, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """Lock the checkpoint rows of these partitions (creating them at 0) and return them.

    The row lock serialises two runners that briefly hold the same partition during a
    rebalance: the second one waits, then sees the first one's checkpoint and skips
    what was already applied.
    """
    wanted = sorted(set(partitions))  # a fixed lock order: no deadlock between runners
    if not wanted:
        return {}
    cursor = await conn.execute(
        """
        INSERT INTO memstream.checkpoints AS c (projection, version, topic, partition, next_offset)
        SELECT %s, %s, t, p, 0 FROM unnest(%b::text[], %b::int[]) AS u(t, p)
        ON CONFLICT (projection, version, topic, partition)
            DO UPDATE SET next_offset = c.next_offset
        RETURNING topic, partition, next_offset
        """,
        [projection, version, [t for t, _ in wanted], [p for _, p in wanted]],
    )
    return {(topic, partition): offset for topic, partition, offset in await cursor.fetchall()}


async def advance(
    conn: AsyncConnection[Any],
    projection: str,
    version: int,
    next_offsets: Mapping[TopicPartition, int],
) -> None:
    """Move checkpoints forward (never back) to the given next offsets."""
    if not next_offsets:
        return
    items = sorted(next_offsets.items())
    await conn.execute(
        """
        UPDATE memstream.checkpoints AS c
           SET next_offset = GREATEST(c.next_offset, u.o), updated_at = now()
          FROM unnest(%b::text[], %b::int[], %b::bigint[]) AS u(t, p, o)
         WHERE c.projection = %s AND c.version = %s AND c.topic = u.t AND c.partition = u.p
        """,
        [
            [t for (t, _), _ in items],
            [p for (_, p), _ in items],
            [o for _, o in items],
            projection,
            version,
        ],
    )


async def read(
    conn: AsyncConnection[Any], projection: str, version: int
) -> dict[TopicPartition, int]:
    """All checkpoints of a projection version (no lock)."""
    cursor = await conn.execute(
        "SELECT topic, partition, next_offset FROM memstream.checkpoints"
        " WHERE projection = %s AND version = %s",
        [projection, version],
    )
    return {(topic, partition): offset for topic, partition, offset in await cursor.fetchall()}
