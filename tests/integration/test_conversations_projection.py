"""The conversations read model, fed through a real log."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, ClassVar

import orjson

from projections.conversations import (
    ConversationsProjection,
    get_conversation,
    get_user,
    list_conversations,
)
from schemas import Analysis, Event, Source, ToolCall, Turn, UserForgotten
from services.settings import Settings
from streams import EventLog, versions
from streams.projection import Projection
from streams.runtime import ProjectionRunner
from streams.topics import Topics
from tests.helpers import BASE_TIME, call_events, eventually, failed_event, scalar
from tests.integration.projection_contract import ProjectionContract, project


class TestConversationsContract(ProjectionContract):
    projection: ClassVar[type[Projection]] = ConversationsProjection

    def events(self) -> list[Event]:
        return [
            *call_events("acme", 30),
            failed_event("acme", "no answer"),
            *call_events("beta", 5),
        ]


async def test_a_finished_call_is_a_conversation_with_its_turns_and_analysis(
    topics: Settings, db: Any
) -> None:
    events = call_events("acme", 3, turns=5, users=2)
    async with EventLog(topics) as log:
        await log.append_many(events)
    await project(topics, ConversationsProjection())

    conversation = await get_conversation(db, "acme", "conv-2")
    assert conversation is not None
    assert conversation["status"] == "ended"
    assert conversation["platform_status"] == "done"
    assert conversation["subject"] == "acme/+15550000000"  # calls 0 and 2 share a caller
    assert conversation["agent_id"] == "agent-1"
    assert conversation["channel"] == "phone"
    assert conversation["duration_secs"] == 180.0
    assert conversation["summary"] == "call 2 went fine" and conversation["successful"] is True
    assert conversation["metadata"] == {"cost": 2}
    assert conversation["turn_count"] == 5
    assert [t["text"] for t in conversation["turns"]] == [f"turn {i} of call 2" for i in range(5)]
    assert [t["role"] for t in conversation["turns"]] == ["agent", "user", "agent", "user", "agent"]
    assert [t["offset_ms"] for t in conversation["turns"]] == [0, 1500, 3000, 4500, 6000]

    user = await get_user(db, "acme", "acme/+15550000000")
    assert user is not None
    assert user["conversation_count"] == 2
    assert user["phone"] == "+15550000000" and user["display_name"] == "Caller 0"
    assert user["first_seen"] == BASE_TIME
    recent = await list_conversations(db, "acme", "acme/+15550000000")
    assert [c["conversation_id"] for c in recent] == ["conv-2", "conv-0"]


async def test_a_late_start_event_does_not_reopen_an_ended_conversation(
    topics: Settings, db: Any
) -> None:
    started, ended = call_events("acme", 1)
    async with EventLog(topics) as log:
        await log.append_many([started, ended, started])
    await project(topics, ConversationsProjection())
    conversation = await get_conversation(db, "acme", "conv-0")
    assert conversation is not None and conversation["status"] == "ended"


async def test_a_failed_call_is_recorded_with_its_reason(topics: Settings, db: Any) -> None:
    async with EventLog(topics) as log:
        await log.append(failed_event("acme", "the number is not reachable"))
    await project(topics, ConversationsProjection())
    conversation = await get_conversation(db, "acme", "failed-1")
    assert conversation is not None
    assert conversation["status"] == "failed"
    assert conversation["failure_reason"] == "the number is not reachable"


async def test_a_v1_conversation_ended_in_the_log_is_projected_through_its_upcaster(
    topics: Settings, db: Any
) -> None:
    old = {
        "id": "0190f0a8-5c6e-7bb2-9a51-2f3f7b7c0a01",
        "type": "conversation.ended",
        "v": 1,
        "tenant": "acme",
        "subject": "acme/user-7",
        "occurred_at": "2024-07-01T10:03:00Z",
        "recorded_at": "2024-07-01T10:03:01Z",
        "source": {"platform": "elevenlabs", "event_id": "old-conv", "agent_id": None},
        "correlation_id": "old-conv",
        "causation_id": None,
        "data": {
            "conversation_id": "old-conv",
            "started_at": "2024-07-01T10:00:00Z",
            "status": "done",
            "turns": [
                {
                    "role": "agent",
                    "message": "Hello!",
                    "time_in_call_secs": 0.4,
                    "tool_calls": None,
                },
                {"role": "user", "message": "Hi, it's Ann.", "time_in_call_secs": 2.25},
            ],
        },
    }
    async with EventLog(topics) as log:
        await log.append_raw(
            Topics(topics.topic_prefix).conversations, b"acme/user-7", orjson.dumps(old), []
        )
    await project(topics, ConversationsProjection())
    conversation = await get_conversation(db, "acme", "old-conv")
    assert conversation is not None
    assert [(t["text"], t["offset_ms"]) for t in conversation["turns"]] == [
        ("Hello!", 400),
        ("Hi, it's Ann.", 2250),
    ]


async def test_a_forgotten_user_is_purged_and_later_calls_start_afresh(
    topics: Settings, db: Any
) -> None:
    calls = call_events("acme", 4, users=2)  # calls 0 and 2: caller 0; 1 and 3: caller 1
    subject = "acme/+15550000000"
    forget = UserForgotten.create(
        tenant="acme",
        subject=subject,
        source=Source(platform="api"),
        occurred_at=BASE_TIME,
        data={"reason": "erasure request"},
    )
    later = call_events("acme", 6, users=2)[8:10]  # call 4: caller 0 again, after forgetting
    async with EventLog(topics) as log:
        await log.append_many([*calls, forget, *later])
    await project(topics, ConversationsProjection())

    assert await get_conversation(db, "acme", "conv-0") is None
    assert await get_conversation(db, "acme", "conv-2") is None
    assert (
        await scalar(
            db,
            "SELECT count(*) FROM conversations.turns"
            " WHERE subject = %s AND conversation_id IN ('conv-0', 'conv-2')",
            subject,
        )
        == 0
    )
    user = await get_user(db, "acme", subject)
    assert user is not None and user["conversation_count"] == 1  # only the call after forgetting
    assert await get_conversation(db, "acme", "conv-4") is not None
    other = await get_user(db, "acme", "acme/+15550000001")
    assert other is not None and other["conversation_count"] == 2  # untouched


def forgetting(subject: str, at: datetime) -> UserForgotten:
    return UserForgotten.create(
        tenant="acme",
        subject=subject,
        source=Source(platform="api"),
        occurred_at=at,
        data={"reason": "erasure request"},
    )


async def test_an_erasure_seen_again_leaves_the_calls_that_came_after_it(
    topics: Settings, db: Any
) -> None:
    before = call_events("acme", 1)  # conv-0: caller 0, at BASE_TIME
    subject = before[0].subject
    after = call_events("acme", 8)[14:16]  # conv-7: caller 0 again, 7 hours later
    erasure = forgetting(subject, BASE_TIME + timedelta(hours=1))
    async with EventLog(topics) as log:
        # The same user.forgotten twice: redelivered, imported again, replayed.
        await log.append_many([*before, erasure, *after, erasure])
    await project(topics, ConversationsProjection())
    user = await get_user(db, "acme", subject)
    assert user is not None and user["conversation_count"] == 1
    assert [c["conversation_id"] for c in await list_conversations(db, "acme", subject)] == [
        "conv-7"
    ]
    # The erasure is recorded by the caller's pseudonym, never their number.
    [(recorded,)] = await (
        await db.execute("SELECT subject FROM conversations_v1.forgotten")
    ).fetchall()
    assert recorded.startswith("acme/") and subject.split("/")[1] not in recorded


async def test_a_call_under_way_at_the_erasure_does_not_bring_the_user_back(
    topics: Settings, db: Any
) -> None:
    started, ended = call_events("acme", 1)  # conv-0 begins at BASE_TIME, ends 3 minutes on
    subject = started.subject
    async with EventLog(topics) as log:
        await log.append_many([started, forgetting(subject, BASE_TIME + timedelta(minutes=1))])
        # Its end is dated after the erasure, so it still decodes; the call began before.
        await log.append(ended)
    await project(topics, ConversationsProjection())
    assert await get_user(db, "acme", subject) is None
    assert await get_conversation(db, "acme", "conv-0") is None
    assert await scalar(db, "SELECT count(*) FROM conversations.turns") == 0


async def test_tool_calls_and_analysis_are_stored_as_json(topics: Settings, db: Any) -> None:
    started, ended = call_events("acme", 1)
    data = ended.data.model_copy(
        update={
            "turns": (
                *ended.data.turns,
                Turn(
                    role="agent",
                    text="",
                    offset_ms=9000,
                    tool_calls=(
                        ToolCall(
                            name="book_appointment",
                            arguments={"day": "tuesday", "slots": [9, 10]},
                            result="booked for Tuesday 9:00",
                        ),
                    ),
                ),
            ),
            "analysis": Analysis(summary="booked", data_collected={"city": "Lyon"}),
        }
    )
    async with EventLog(topics) as log:
        await log.append_many([started, ended.model_copy(update={"data": data})])
    await project(topics, ConversationsProjection())
    conversation = await get_conversation(db, "acme", "conv-0")
    assert conversation is not None
    assert conversation["turns"][-1]["tool_calls"] == [
        {
            "name": "book_appointment",
            "arguments": {"day": "tuesday", "slots": [9, 10]},
            "result": "booked for Tuesday 9:00",
        }
    ]
    assert conversation["turns"][0]["tool_calls"] is None
    assert conversation["analysis"]["data_collected"] == {"city": "Lyon"}
    assert conversation["turn_count"] == 5


async def test_the_passages_index_is_built_once_the_version_has_caught_up(
    topics: Settings, db: Any
) -> None:
    async with EventLog(topics) as log:
        await log.append_many(call_events("acme", 20))
    runner = ProjectionRunner(ConversationsProjection(), topics)
    await runner.start()
    # The version's tables exist, and the index is not among them: writing passages does
    # not maintain it during the catch-up.
    assert await scalar(db, "SELECT to_regclass('conversations_v1.passages_by_subject')") is None
    task = asyncio.create_task(runner.run())
    try:
        await versions.wait_caught_up(topics, db, ConversationsProjection(), 1, timeout=60)
        await eventually(
            lambda: scalar(
                db, "SELECT to_regclass('conversations_v1.passages_by_subject') IS NOT NULL"
            ),
            bool,
            timeout=30,
        )
    finally:
        runner.stop()
        await task
    # Every turn of both speakers is a passage: 20 calls of 4 turns.
    assert await scalar(db, "SELECT count(*) FROM conversations.passages") == 80
