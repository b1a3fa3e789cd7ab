"""streams.reader.LogReader: the log read outside any group, from a start, in time order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas import Event
from services.settings import Settings
from streams import BrokerUnavailable, EventLog
from streams.reader import LogReader, Start
from streams.topics import Topics
from tests.helpers import call_events, closed_port


def physical(settings: Settings, *logical: str) -> list[str]:
    return [Topics(settings.topic_prefix).name(name) for name in logical]


async def read_all(settings: Settings, start: Start = "earliest") -> list[Any]:
    topics = physical(settings, "conversations", "memories")
    async with LogReader(settings.require_kafka(), topics, start=start) as reader:
        return [record async for record in reader]


def ids(records: list[Any]) -> list[str]:
    return [orjson.loads(r.value)["id"] for r in records]


async def append_one_by_one(settings: Settings, events: list[Event]) -> None:
    async with EventLog(settings) as log:
        for event in events:
            await log.append(event)
            await asyncio.sleep(0.002)  # increasing timestamps whatever the partition


async def test_a_dump_merges_partitions_in_time_order_and_stops_at_the_end(
    topics: Settings,
) -> None:
    events = call_events("acme", 8, users=5)
    await append_one_by_one(topics, events)
    records = await read_all(topics)
    assert ids(records) == [str(e.id) for e in events]
    assert len({r.partition for r in records}) > 1  # the order is across partitions
    assert [r.timestamp for r in records] == sorted(r.timestamp for r in records)


async def test_a_dump_ends_at_the_end_as_of_opening(topics: Settings) -> None:
    first, later = call_events("acme", 3), call_events("beta", 3)
    async with EventLog(topics) as log:
        await log.append_many(first)
        topic_names = physical(topics, "conversations")
        async with LogReader(topics.require_kafka(), topic_names) as reader:
            assert reader.total == len(first)
            await log.append_many(later)
            records = [record async for record in reader]
    assert sorted(ids(records)) == sorted(str(e.id) for e in first)


async def test_a_start_time_or_offsets_skip_what_came_before(topics: Settings) -> None:
    early, late = call_events("acme", 3), call_events("beta", 3)
    await append_one_by_one(topics, early)
    await asyncio.sleep(0.05)
    between = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await append_one_by_one(topics, late)

    assert ids(await read_all(topics, between)) == [str(e.id) for e in late]
    assert ids(await read_all(topics, "latest")) == []
    everything = await read_all(topics)
    # Explicit offsets: start after the first record of each partition that has records.
    firsts: dict[tuple[str, int], Any] = {}
    for record in everything:
        firsts.setdefault((record.topic, record.partition), record)
    after_firsts = {key: record.offset + 1 for key, record in firsts.items()}
    skipped = {r.value for r in firsts.values()}
    assert ids(await read_all(topics, after_firsts)) == ids(
        [r for r in everything if r.value not in skipped]
    )


async def test_a_follower_sees_records_appended_after_it_opened(topics: Settings) -> None:
    old, new = call_events("acme", 2), call_events("beta", 2)
    async with EventLog(topics) as log:
        await log.append_many(old)
        topic_names = physical(topics, "conversations")
        async with LogReader(
            topics.require_kafka(), topic_names, start="latest", follow=True, poll_ms=100
        ) as reader:
            await log.append_many(new)

            async def collect() -> list[Any]:
                seen = []
                async for record in reader:
                    seen.append(record)
                    if len(seen) == len(new):
                        return seen
                return seen

            records = await asyncio.wait_for(collect(), 60)
    assert sorted(ids(records)) == sorted(str(e.id) for e in new)


async def test_an_unreachable_broker_raises_broker_unavailable(settings: Settings) -> None:
    with pytest.raises(BrokerUnavailable, match="unreachable"):
        async with LogReader(f"127.0.0.1:{closed_port()}", ["x.conversations"]):
            pass
