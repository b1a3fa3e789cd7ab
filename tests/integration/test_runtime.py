"""The projection runtime against a real broker and a real database."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
import pytest
from psycopg import AsyncConnection

from schemas import ConversationFailed, decode_event
from services.settings import Settings
from streams import EventLog, ProjectionRunner, versions
from streams.dlq import decode as decode_dead_letter
from streams.projection import group_id
from streams.runtime import FAULT_POINTS
from streams.topics import Topics
from tests.helpers import (
    call_events,
    eventually,
    failed_event,
    group_state,
    read_topic,
    scalar,
    spawn_worker,
)
from tests.ledger import LedgerProjection
from tests.worker import CRASH_EXIT_CODE


async def ledger_stats(db: AsyncConnection[Any]) -> tuple[int, int]:
    """(rows, distinct coordinates) of the ledger: equal iff nothing applied twice."""
    if await scalar(db, "SELECT to_regclass('ledger_v1.ledger')") is None:
        return 0, 0  # no runner has created it yet
    cursor = await db.execute(
        'SELECT count(*), count(DISTINCT (topic, partition, "offset")) FROM ledger_v1.ledger'
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def settled(settings: Settings, db: AsyncConnection[Any]) -> tuple[int, int, int]:
    """(events the ledger has not checkpointed, rows, distinct coordinates). At 0 every
    record of the log was applied by a committed transaction (the checkpoints advance in
    it): nothing applied twice can still appear, the ledger is final."""
    lag = sum((await versions.lag(settings, db, LedgerProjection, 1)).values())
    return lag, *await ledger_stats(db)


def final(count: int) -> Any:
    """A `settled` result once everything is checkpointed and at least `count` rows are in."""
    return lambda s: s[0] == 0 and s[1] >= count


async def run_until(runner: ProjectionRunner, condition: Any, timeout: float = 60.0) -> Any:
    task = asyncio.create_task(runner.run())
    try:
        return await eventually(condition[0], condition[1], timeout=timeout)
    finally:
        runner.stop()
        await task


async def test_appended_events_appear_in_the_ledger_once_each(topics: Settings, db: Any) -> None:
    events = call_events("acme", 40)
    async with EventLog(topics) as log:
        positions = await log.append_many(events)
    assert len({(p.partition, p.offset) for p in positions}) == len(events)

    runner = ProjectionRunner(LedgerProjection(), topics)
    rows, distinct = await run_until(
        runner, (lambda: ledger_stats(db), lambda s: s[0] >= len(events))
    )
    assert (rows, distinct) == (len(events), len(events))
    ids = {
        row[0]
        for row in await (await db.execute("SELECT event_id FROM ledger_v1.ledger")).fetchall()
    }
    assert ids == {e.id for e in events}
    # The checkpoints sit right after the last record of every partition.
    ends: dict[int, int] = {}
    for p in positions:
        ends[p.partition] = max(ends.get(p.partition, 0), p.offset + 1)
    stored = dict(
        await (
            await db.execute(
                "SELECT partition, next_offset FROM memstream.checkpoints"
                " WHERE projection = 'ledger'"
            )
        ).fetchall()
    )
    assert {p: o for p, o in stored.items() if o} == ends


@pytest.mark.parametrize("step", FAULT_POINTS)
async def test_a_crash_at_any_step_of_a_batch_loses_and_duplicates_nothing(
    topics: Settings, db: Any, step: str
) -> None:
    settings = topics.replace(batch_max_records=25)
    events = call_events("acme", 100)  # 200 events, several batches per partition
    async with EventLog(settings) as log:
        await log.append_many(events)

    # A worker process dies abruptly (os._exit) at `step` of its third batch.
    worker = spawn_worker(settings, MEMSTREAM_TEST_CRASH_AT=step, MEMSTREAM_TEST_CRASH_BATCH="3")
    _, stderr = await asyncio.to_thread(worker.communicate, timeout=120)
    assert worker.returncode == CRASH_EXIT_CODE, stderr.decode()[-2000:]
    before = await ledger_stats(db)
    assert before[0] == before[1] < len(events)  # it died part-way, without duplicates

    # A fresh runner resumes from the checkpoints.
    runner = ProjectionRunner(LedgerProjection(), settings)
    await run_until(runner, (lambda: settled(settings, db), final(len(events))))
    assert await ledger_stats(db) == (len(events), len(events))


async def test_two_workers_share_partitions_and_one_takes_over_when_the_other_dies(
    topics: Settings, db: Any
) -> None:
    settings = topics.replace(batch_max_records=20)
    first = spawn_worker(settings, MEMSTREAM_TEST_WORKER="first")
    second = spawn_worker(settings, MEMSTREAM_TEST_WORKER="second")
    try:
        group = group_id(settings.topic_prefix, "ledger", 1)
        await eventually(lambda: group_state(settings, group), lambda s: s == ("Stable", 2), 90)
        events = call_events("acme", 300, users=30)
        async with EventLog(settings) as log:
            await log.append_many(events[:300])
            await eventually(lambda: ledger_stats(db), lambda s: s[0] >= 300, timeout=90)
            workers = {
                row[0]
                for row in await (
                    await db.execute("SELECT DISTINCT worker FROM ledger_v1.ledger")
                ).fetchall()
            }
            assert workers == {"first", "second"}  # both got partitions

            first.kill()  # SIGKILL: no group leave, no cleanup
            first.wait()
            await log.append_many(events[300:])
        await eventually(lambda: settled(settings, db), final(len(events)), timeout=90)
        assert await ledger_stats(db) == (len(events), len(events))
        late = await scalar(
            db,
            'SELECT count(*) FROM ledger_v1.ledger WHERE worker = %s AND "offset" >= 0',
            "second",
        )
        assert late > 0
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait, 30)


async def test_poison_events_go_to_the_dlq_and_the_partition_moves_on(
    topics: Settings, db: Any
) -> None:
    settings = topics.replace(poison_retries=2)
    tp = Topics(settings.topic_prefix)
    before = call_events("acme", 5)
    after = call_events("beta", 5)
    async with EventLog(settings) as log:
        await log.append_many(before)
        poison = await log.append(failed_event("acme", "poison"))
        garbage = await log.append_raw(tp.conversations, b"acme/+15550000000", b"{not json", [])
        await log.append_many(after)

    runner = ProjectionRunner(LedgerProjection(), settings)
    good = len(before) + len(after)
    await run_until(runner, (lambda: ledger_stats(db), lambda s: s[0] >= good))
    assert await ledger_stats(db) == (good, good)

    letters = [decode_dead_letter(r.value) for r in await read_topic(settings, tp.dlq)]
    by_offset = {(d["partition"], d["offset"]): d for d in letters}
    assert set(by_offset) == {
        (poison.partition, poison.offset),
        (garbage.partition, garbage.offset),
    }
    apply_failure = by_offset[(poison.partition, poison.offset)]
    assert apply_failure["stage"] == "apply"
    assert apply_failure["error"]["type"] == "PoisonEvent"
    assert apply_failure["attempts"] == settings.poison_retries + 1
    assert apply_failure["projection"] == "ledger" and apply_failure["topic"] == tp.conversations
    # The letter carries the record as it was in the log: its personal text sealed.
    assert orjson.loads(apply_failure["payload"])["data"]["reason"] != "poison"
    failed = decode_event(apply_failure["payload"])
    assert isinstance(failed, ConversationFailed) and failed.data.reason == "poison"
    decode_failure = by_offset[(garbage.partition, garbage.offset)]
    assert decode_failure["stage"] == "decode"
    assert decode_failure["error"]["type"] == "MalformedEvent"
    assert decode_failure["error"]["code"] == "not_json"
    assert decode_failure["payload"] == "{not json"


async def test_an_event_the_database_refuses_is_dead_lettered_not_retried_as_an_outage(
    topics: Settings, db: Any
) -> None:
    # A statement error that psycopg raises as an OperationalError (54000, a key too long
    # for its index) is the event's, not the database's: retrying it as an outage stalled
    # every tenant's events behind it.
    settings = topics.replace(poison_retries=1)
    tp = Topics(settings.topic_prefix)
    before, after = call_events("acme", 3), call_events("beta", 3)
    async with EventLog(settings) as log:
        await log.append_many(before)
        refused = await log.append(failed_event("acme", "unindexable"))
        await log.append_many(after)

    runner = ProjectionRunner(LedgerProjection(), settings)
    good = len(before) + len(after)
    await run_until(runner, (lambda: settled(settings, db), final(good)), timeout=30)
    assert await ledger_stats(db) == (good, good)
    [letter] = [decode_dead_letter(r.value) for r in await read_topic(settings, tp.dlq)]
    assert (letter["partition"], letter["offset"]) == (refused.partition, refused.offset)
    assert letter["stage"] == "apply" and letter["attempts"] == settings.poison_retries + 1
    assert letter["error"]["type"] == "ProgramLimitExceeded"


async def test_the_runner_reconnects_when_its_database_connection_is_killed(
    topics: Settings, db: Any
) -> None:
    settings = topics.replace(batch_max_records=10)
    events = call_events("acme", 60)
    runner = ProjectionRunner(LedgerProjection(), settings)
    task = asyncio.create_task(runner.run())
    try:
        async with EventLog(settings) as log:
            await log.append_many(events[:60])
            await eventually(lambda: ledger_stats(db), lambda s: s[0] > 0)
            # Kill every other session on this database, mid-stream.
            await db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await log.append_many(events[60:])
        await eventually(lambda: settled(settings, db), final(len(events)))
        assert await ledger_stats(db) == (len(events), len(events))
    finally:
        runner.stop()
        await task
