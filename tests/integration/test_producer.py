"""The producer: positions, partitioning and ordering on both of its send paths."""

from __future__ import annotations

import pytest

from schemas import ConversationEnded, Event, decode_event
from services.settings import Settings
from streams import EventLog, RecordTooLarge
from streams.producer import MAX_RECORD_BYTES
from streams.topics import Topics
from tests.helpers import call_events, read_topic


async def test_positions_point_at_the_appended_events_on_both_paths(topics: Settings) -> None:
    few = call_events("acme", 5)  # below the batch threshold: per-record sends
    many = call_events("beta", 150, users=40)  # record batches per partition
    async with EventLog(topics) as log:
        few_positions = await log.append_many(few)
        many_positions = await log.append_many(many)
    stored = {
        (r.partition, r.offset): decode_event(r.value).id
        for r in await read_topic(topics, Topics(topics.topic_prefix).conversations)
    }
    for events, positions in ((few, few_positions), (many, many_positions)):
        assert [stored[(p.partition, p.offset)] for p in positions] == [e.id for e in events]


async def test_a_subject_lands_on_the_same_partition_whichever_path_appends_it(
    topics: Settings,
) -> None:
    events = call_events("acme", 100, users=30)
    async with EventLog(topics) as log:
        batched = await log.append_many(events)
        single = [await log.append(event) for event in events[:60]]
    by_subject = {e.subject: p.partition for e, p in zip(events, batched, strict=True)}
    assert len(set(by_subject.values())) == topics.partitions  # the keys spread out
    for event, position in zip(events[:60], single, strict=True):
        assert position.partition == by_subject[event.subject]


async def test_a_subjects_events_keep_their_order_in_a_bulk_append(topics: Settings) -> None:
    events = call_events("acme", 300, users=3)
    async with EventLog(topics) as log:
        positions = await log.append_many(events)
    last: dict[str, int] = {}
    for event, position in zip(events, positions, strict=True):
        assert position.offset > last.get(event.subject, -1)
        last[event.subject] = position.offset


async def test_a_transcript_larger_than_a_record_batch_is_appended(topics: Settings) -> None:
    events = call_events("acme", 40, turns=4)
    long_call = call_events("acme", 1, turns=15_000)  # 15,000 turns: over 1 MB on the wire
    async with EventLog(topics) as log:
        positions = await log.append_many([*events, *long_call, *events])
    big = positions[len(events) + 1]
    stored = {
        (r.partition, r.offset): r.value
        for r in await read_topic(topics, Topics(topics.topic_prefix).conversations)
    }
    assert len(stored[(big.partition, big.offset)]) > 1024 * 1024
    assert decode_event(stored[(big.partition, big.offset)]).id == long_call[1].id


def over_a_record(event: Event) -> Event:
    """``event`` (a conversation.ended) with a first turn longer than a record may be."""
    data = event.data.model_dump()
    data["turns"][0]["text"] = "x" * (MAX_RECORD_BYTES + 1)
    return ConversationEnded.create(
        tenant=event.tenant,
        subject=event.subject,
        source=event.source,
        occurred_at=event.occurred_at,
        data=data,
    )


@pytest.mark.parametrize("others", [3, 100], ids=["per-record", "batches"])
async def test_an_event_over_the_record_limit_fails_the_append_before_anything_is_sent(
    topics: Settings, others: int
) -> None:
    """Not BrokerUnavailable (which callers answer with a retryable 503): no retry could
    append it. None of the call's events is appended, even those sent before it."""
    events = call_events("acme", others)
    too_large = over_a_record(events[1])
    async with EventLog(topics) as log:
        with pytest.raises(RecordTooLarge) as refused:
            await log.append_many([*events, too_large, *events])
    assert refused.value.size > refused.value.limit == MAX_RECORD_BYTES
    assert refused.value.topic == Topics(topics.topic_prefix).conversations
    assert await read_topic(topics, Topics(topics.topic_prefix).conversations) == []
