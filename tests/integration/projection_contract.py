"""The contract every projection passes (pyeventsourcing's *_testcase.py pattern).

A projection's test module subclasses :class:`ProjectionContract`, says which
projection and which events, and inherits these tests:

- redelivered events (the same event ids appended again) change no row;
- a rebuild (version 2 from offset 0) gives rows identical to version 1, and the live
  switch is atomic while readers keep querying the read views;
- the checkpoints end at the log's end, written with the rows they cover.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from psycopg import AsyncConnection, sql

from schemas import Event
from streams import EventLog, ProjectionRunner, Settings, versions
from streams.offsets import log_extent
from streams.projection import Projection, version_schema
from streams.topics import Topics
from tests.helpers import scalar


async def snapshot(
    conn: AsyncConnection[Any], schema: str, tables: tuple[str, ...]
) -> dict[str, list[Any]]:
    """Every row of every table, in a total order (all columns)."""
    result: dict[str, list[Any]] = {}
    for table in tables:
        cursor = await conn.execute(
            sql.SQL("SELECT * FROM {}.{} LIMIT 0").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        )
        assert cursor.description is not None
        order_by_every_column = ", ".join(str(i + 1) for i in range(len(cursor.description)))
        cursor = await conn.execute(
            sql.SQL("SELECT * FROM {}.{} ORDER BY " + order_by_every_column).format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        )
        result[table] = await cursor.fetchall()
    return result


async def project(settings: Settings, projection: Projection, version: int = 1) -> None:
    """Run a projection version until it has projected the whole log, then stop it."""
    runner = ProjectionRunner(projection, settings, version=version)
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        conn = await AsyncConnection.connect(settings.require_database(), autocommit=True)
        try:
            await versions.wait_caught_up(settings, conn, projection, version, timeout=60)
        finally:
            await conn.close()
    finally:
        runner.stop()
        await task


class ProjectionContract:
    """Subclass with `projection` and `events()`; pytest collects the inherited tests."""

    projection: ClassVar[type[Projection]]

    def events(self) -> list[Event]:
        raise NotImplementedError

    async def append(self, log: EventLog, events: list[Any]) -> None:
        """Append what `events` returned (a projection of records that are not events, the
        audit's, appends them its own way)."""
        await log.append_many(events)

    async def test_redelivered_events_change_no_row(self, topics: Settings, db: Any) -> None:
        projection = self.projection()
        events = self.events()
        async with EventLog(topics) as log:
            await self.append(log, events)
            await project(topics, projection)
            schema = version_schema(projection.name, 1)
            first = await snapshot(db, schema, projection.tables)
            assert any(first.values()), "the events produced no row at all"
            await self.append(log, events)  # a platform redelivers every webhook
            await self.append(log, events[: len(events) // 2])
        await project(topics, projection)
        assert await snapshot(db, schema, projection.tables) == first

    async def test_rebuild_gives_identical_rows_and_switches_atomically(
        self, topics: Settings, db: Any
    ) -> None:
        projection = self.projection()
        async with EventLog(topics) as log:
            await self.append(log, self.events())
        await project(topics, projection, version=1)
        assert await versions.live_version(db, projection.name) == 1

        await project(topics, projection, version=2)  # builds beside v1, not live yet
        assert await versions.live_version(db, projection.name) == 1
        v1 = await snapshot(db, version_schema(projection.name, 1), projection.tables)
        v2 = await snapshot(db, version_schema(projection.name, 2), projection.tables)
        assert v2 == v1

        # Readers hammer the read views while the switch happens: no error, no gap.
        table = projection.tables[0]
        expected = len(v1[table])
        counts: list[int] = []
        stop = asyncio.Event()

        async def read() -> None:
            reader = await AsyncConnection.connect(topics.require_database(), autocommit=True)
            try:
                while not stop.is_set():
                    counts.append(
                        await scalar(
                            reader,
                            sql.SQL("SELECT count(*) FROM {}.{}")
                            .format(sql.Identifier(projection.name), sql.Identifier(table))
                            .as_string(reader),
                        )
                    )
                    await asyncio.sleep(0)
            finally:
                await reader.close()

        readers = [asyncio.create_task(read()) for _ in range(3)]
        await asyncio.sleep(0.2)
        await versions.switch_live(db, projection, 2)
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*readers)
        assert counts and set(counts) == {expected}
        assert await versions.live_version(db, projection.name) == 2
        definition = await scalar(
            db,
            "SELECT definition FROM pg_views WHERE schemaname = %s AND viewname = %s",
            projection.name,
            table,
        )
        assert version_schema(projection.name, 2) in definition

    async def test_checkpoints_end_at_the_log_end(self, topics: Settings, db: Any) -> None:
        projection = self.projection()
        async with EventLog(topics) as log:
            await self.append(log, self.events())
        await project(topics, projection)
        names = [Topics(topics.topic_prefix).name(t) for t in projection.topics]
        extent = await log_extent(topics.require_kafka(), names)
        cursor = await db.execute(
            "SELECT topic, partition, next_offset FROM memstream.checkpoints"
            " WHERE projection = %s AND version = 1",
            [projection.name],
        )
        stored = {(t, p): o for t, p, o in await cursor.fetchall()}
        assert stored == {tp: end for tp, (_, end) in extent.items()}
