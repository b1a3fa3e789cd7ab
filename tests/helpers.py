"""Shared helpers of the integration tests: building events, waiting, reading topics."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiokafka import TopicPartition
from psycopg import AsyncConnection

from schemas import ConversationEnded, ConversationFailed, ConversationStarted, Event, Source
from streams.offsets import log_extent, standalone_consumer
from streams.settings import Settings

T = TypeVar("T")
BASE_TIME = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def call_events(tenant: str, n: int, *, turns: int = 4, users: int = 7) -> list[Event]:
    """n calls (started + ended each) spread over `users` callers, deterministic content."""
    events: list[Event] = []
    for i in range(n):
        subject = f"{tenant}/+1555000{i % users:04d}"
        source = Source(platform="elevenlabs", event_id=f"conv-{i}", agent_id="agent-1")
        at = BASE_TIME + timedelta(hours=i)
        events.append(
            ConversationStarted.create(
                tenant=tenant,
                subject=subject,
                source=source,
                occurred_at=at,
                data={
                    "conversation_id": f"conv-{i}",
                    "caller_phone": subject.split("/")[1],
                    "channel": "phone",
                    "dynamic_variables": {"user_name": f"Caller {i % users}"},
                },
            )
        )
        events.append(
            ConversationEnded.create(
                tenant=tenant,
                subject=subject,
                source=source,
                occurred_at=at + timedelta(minutes=3),
                data={
                    "conversation_id": f"conv-{i}",
                    "started_at": at,
                    "ended_at": at + timedelta(minutes=3),
                    "duration_secs": 180.0,
                    "status": "done",
                    "turns": [
                        {
                            "role": "agent" if t % 2 == 0 else "user",
                            "text": f"turn {t} of call {i}",
                            "offset_ms": t * 1500,
                        }
                        for t in range(turns)
                    ],
                    "analysis": {"summary": f"call {i} went fine", "successful": True},
                    "metadata": {"cost": i},
                },
            )
        )
    return events


def failed_event(tenant: str, reason: str, conversation_id: str = "failed-1") -> Event:
    return ConversationFailed.create(
        tenant=tenant,
        subject=f"{tenant}/+15559999999",
        source=Source(platform="elevenlabs", event_id=conversation_id),
        occurred_at=BASE_TIME,
        data={"conversation_id": conversation_id, "reason": reason},
    )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float = 60.0,
    interval: float = 0.1,
) -> T:
    """Poll `probe` until `done(result)`; fail the test with the last result on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s; last value: {result!r}")
        await asyncio.sleep(interval)


async def scalar(conn: AsyncConnection[Any], query: str, *params: Any) -> Any:
    cursor = await conn.execute(query, list(params))
    row = await cursor.fetchone()
    return row[0] if row else None


async def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record currently in a physical topic, across partitions."""
    extent = await log_extent(settings.require_kafka(), [topic])
    partitions = [TopicPartition(t, p) for (t, p), (start, end) in extent.items() if end > start]
    if not partitions:
        return []
    async with standalone_consumer(settings.require_kafka()) as consumer:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []

        async def behind() -> bool:
            for tp in partitions:
                if await consumer.position(tp) < extent[(tp.topic, tp.partition)][1]:
                    return True
            return False

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
        return records


def spawn_worker(settings: Settings, **env: str) -> subprocess.Popen[bytes]:
    """Start tests/worker.py as a separate process with these settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker"],
        env={**os.environ, **settings.to_env(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def group_state(settings: Settings, group: str) -> tuple[str, int]:
    """(state, number of members) of a consumer group, e.g. ("Stable", 2)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.require_kafka())
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        described = response.to_object()["groups"][0]
        return described["state"], len(described["members"])
    finally:
        await admin.close()


def closed_port() -> int:
    """A local port nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
