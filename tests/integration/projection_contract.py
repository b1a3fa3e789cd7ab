"""The contract every projection passes (pyeventsourcing's *_testcase.py pattern).

A read model's test module subclasses :class:`ProjectionContract`, says which
projection and which events, and inherits these tests:

- redelivered events (the same event ids appended again) change no row;
- a rebuild (version 2 from offset 0) gives rows identical to version 1, and the live
  switch is atomic while readers keep querying the read views;
- the checkpoints end at the log's end, written with the rows they cover.

A processor (a projection that appends derived events: extraction, embedder,
summarizer) subclasses :class:`ProcessorContract` instead, which checks what it appends
as well as its own tables: a redelivery derives no new event, a rebuild derives the
same events, and the checkpoints end at the log's end (see the class).

tests/integration/test_contract_coverage.py fails when a projection of
``projections.PROJECTIONS`` has no subclass of either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

from psycopg import AsyncConnection, sql

from schemas import Event, decode_event
from services.settings import Settings
from streams import EventLog, ProjectionRunner, lineage, versions
from streams.offsets import log_extent
from streams.projection import Projection, version_schema
from streams.topics import Topics
from tests.helpers import read_topic, scalar

#: Reads each reader of the read views completes before and after a live switch.
_READS_AROUND_THE_SWITCH = 5


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


async def assert_checkpoints_at_log_end(
    settings: Settings, db: AsyncConnection[Any], projection: Projection, version: int = 1
) -> None:
    """Version `version` of `projection` has a checkpoint at the end of every partition of
    every topic it reads, and none elsewhere."""
    names = [Topics(settings.topic_prefix).name(t) for t in projection.topics]
    extent = await log_extent(settings.require_kafka(), names)
    cursor = await db.execute(
        "SELECT topic, partition, next_offset FROM memstream.checkpoints"
        " WHERE projection = %s AND version = %s",
        [projection.name, version],
    )
    stored = {(t, p): o for t, p, o in await cursor.fetchall()}
    assert stored == {tp: end for tp, (_, end) in extent.items()}


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
        reads = [0, 0, 0]  # completed per reader
        progress = asyncio.Event()  # set after every read

        async def read(me: int) -> None:
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
                    reads[me] += 1
                    progress.set()
                    await asyncio.sleep(0)
            finally:
                progress.set()
                await reader.close()

        async def every_reader_reads(more: int) -> None:
            """Until each reader has completed `more` reads after this call."""
            target = [n + more for n in reads]
            async with asyncio.timeout(60):
                while any(n < t for n, t in zip(reads, target, strict=True)):
                    for task in readers:
                        if task.done():
                            task.result()  # a reader failed: its error, not a timeout
                    progress.clear()
                    await progress.wait()

        readers = [asyncio.create_task(read(i)) for i in range(len(reads))]
        # Every reader reads before the switch starts and after it ended: each one's
        # window spans the switch.
        await every_reader_reads(_READS_AROUND_THE_SWITCH)
        await versions.switch_live(db, projection, 2)
        await every_reader_reads(_READS_AROUND_THE_SWITCH)
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
        await assert_checkpoints_at_log_end(topics, db, projection)


# -- processors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Derived:
    """A derived event as the log holds it: the lineage header of the version that
    appended it (streams.lineage) and the event."""

    lineage: str | None
    event: Event


async def derived(settings: Settings, processor: Projection) -> list[Derived]:
    """Every record of the topics `processor` appends to, in log order per partition."""
    found: list[Derived] = []
    for topic in processor.produces:
        for record in await read_topic(settings, Topics(settings.topic_prefix).name(topic)):
            stamp = dict(record.headers or ()).get(lineage.HEADER)
            found.append(Derived(stamp.decode() if stamp else None, decode_event(record.value)))
    return found


def comparable(event: Event) -> dict[str, Any]:
    """What a derived event says: everything but ``recorded_at``, the time its copy was
    built, which a consumer never compares (it deduplicates on ``id``)."""
    return event.model_dump(mode="json", exclude={"recorded_at"})


class ProcessorContract:
    """Subclass with `processor` and `events()` (its input); pytest collects the inherited
    tests. Override `build` to configure the instance (a shared embedder, a debounce).

    - **Redelivery** (every input appended again, half of it a third time) changes none of
      the processor's tables and derives no event with a new id, and no copy that says
      anything else. ``reappends_redelivered`` says which of two things is true of the
      processor, and the test asserts it: False, the log gains no derived record at all
      (the processor remembers what it derived from); True, it appends copies with the
      same ids, which every consumer applies once (event-id dedup, each read model's own
      ProjectionContract redelivery test).
    - **Rebuild**: version 2 from offset 0, beside version 1, fills its own tables (its
      version schema) as version 1 did, and appends, under its own lineage header, the
      events version 1 appended: the same ids, each once, saying the same. A reader that
      follows either lineage therefore gets the same events, and one that follows both
      (``downstream``, when set, is projected across the rebuild) applies version 2's
      copies as no-ops. A processor whose output legitimately depends on batch boundaries
      overrides `rebuild_key` (and `same`) to say what a rebuild keeps, and sets
      ``rebuild_derives_same_events = False``.
    - **Checkpoints** end at the log's end, as a read model's do.
    """

    processor: ClassVar[type[Projection]]
    #: True: a redelivered input is derived from again, with the same event ids.
    reappends_redelivered: ClassVar[bool] = False
    #: False: a rebuild may derive some events under other ids (see `rebuild_key`).
    rebuild_derives_same_events: ClassVar[bool] = True
    #: A read model of the processor's output, projected across the rebuild (optional).
    downstream: ClassVar[type[Projection] | None] = None

    def events(self) -> list[Event]:
        raise NotImplementedError

    def build(self, settings: Settings) -> Projection:
        """The processor instance a version runs."""
        return self.processor()

    async def state(self, conn: AsyncConnection[Any], schema: str) -> dict[str, list[Any]]:
        """The processor's tables in `schema`, as two versions must agree on them."""
        return await snapshot(conn, schema, self.processor.tables)

    def same(self, first: Event, again: Event) -> bool:
        """Whether `again` says what `first` says (two derivations of one event)."""
        return comparable(first) == comparable(again)

    def rebuild_key(self, event: Event) -> Hashable:
        """What identifies a derived event across a rebuild: its id. Events with one key
        are compared by `same`, the last of each key in the log."""
        return event.id

    # -- the tests ----------------------------------------------------------------------

    async def test_redelivery_derives_no_new_event(self, topics: Settings, db: Any) -> None:
        processor = self.build(topics)
        events = self.events()
        schema = version_schema(processor.name, 1)
        async with EventLog(topics) as log:
            await log.append_many(events)
            await project(topics, processor)
            first = await derived(topics, processor)
            assert first, "the events derived no event at all"
            tables = await self.state(db, schema)
            await log.append_many(events)  # a platform redelivers every webhook
            await log.append_many(events[: len(events) // 2])
        await project(topics, processor)

        again = await derived(topics, processor)
        assert await self.state(db, schema) == tables, "a redelivery changed its tables"
        by_id = {d.event.id: d.event for d in first}
        assert len(by_id) == len(first), "version 1 appended one event twice"
        assert {d.event.id for d in again} == set(by_id), "a redelivery derived a new event"
        for copy in again:
            event = copy.event
            assert self.same(by_id[event.id], event), f"{event.type} {event.id} changed"
        if self.reappends_redelivered:
            assert len(again) > len(first), "no copy appended: set reappends_redelivered"
        else:
            assert len(again) == len(first)

    async def test_rebuild_derives_the_same_events_and_tables(
        self, topics: Settings, db: Any
    ) -> None:
        processor = self.build(topics)
        async with EventLog(topics) as log:
            await log.append_many(self.events())
        await project(topics, processor, version=1)
        reader = self.downstream() if self.downstream is not None else None
        if reader is not None:
            await project(topics, reader)
            read_model = await snapshot(db, version_schema(reader.name, 1), reader.tables)

        await project(topics, self.build(topics), version=2)
        assert await versions.live_version(db, processor.name) == 1
        v1 = await self.state(db, version_schema(processor.name, 1))
        assert await self.state(db, version_schema(processor.name, 2)) == v1

        log_records = await derived(topics, processor)
        by_lineage: dict[str | None, list[Event]] = {}
        for record in log_records:
            by_lineage.setdefault(record.lineage, []).append(record.event)
        first = by_lineage.pop(lineage.tag(processor.name, 1), [])
        second = by_lineage.pop(lineage.tag(processor.name, 2), [])
        assert not by_lineage, f"records of no version's lineage: {list(by_lineage)}"
        assert first, "the events derived no event at all"
        if self.rebuild_derives_same_events:
            assert sorted(e.id.hex for e in second) == sorted(e.id.hex for e in first)
        keyed_first = {self.rebuild_key(e): e for e in first}
        keyed_second = {self.rebuild_key(e): e for e in second}
        assert set(keyed_second) == set(keyed_first)
        for key, event in keyed_second.items():
            assert self.same(keyed_first[key], event), f"{event.type} {key} differs in v2"

        if reader is not None:
            # A reader of both lineages: version 2's copies are events it has applied.
            await project(topics, reader)
            assert await snapshot(db, version_schema(reader.name, 1), reader.tables) == read_model

    async def test_checkpoints_end_at_the_log_end(self, topics: Settings, db: Any) -> None:
        processor = self.build(topics)
        async with EventLog(topics) as log:
            await log.append_many(self.events())
        await project(topics, processor)
        await assert_checkpoints_at_log_end(topics, db, processor)
