"""Shared helpers of the integration tests: building events, waiting, reading topics."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import TopicPartition
from psycopg import AsyncConnection

from schemas import (
    ConversationEnded,
    ConversationFailed,
    ConversationStarted,
    Event,
    Source,
    get_personal_codec,
    set_personal_codec,
)
from services.settings import Settings
from streams.offsets import log_extent, standalone_consumer
from streams.subject_keys import SubjectKeyCodec, install_personal_codec

T = TypeVar("T")
BASE_TIME = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@contextmanager
def codec_restored() -> Iterator[None]:
    """The process's personal data codec after the block as it was before it, whatever
    the block installed; a key store codec installed within has its connection closed (a
    database with a session open can be neither copied nor dropped)."""
    previous = get_personal_codec()
    try:
        yield
    finally:
        installed = set_personal_codec(previous)
        if isinstance(installed, SubjectKeyCodec) and installed is not previous:
            installed.store.close()


@contextmanager
def personal_data_codec(settings: Settings) -> Iterator[None]:
    """The encrypting codec on `settings`' database for the block, as every memstream
    process has it; then the previous one again (:func:`codec_restored`)."""
    with codec_restored():
        install_personal_codec(settings)
        yield


def call_events(
    tenant: str, n: int, *, turns: int = 4, users: int = 7, spacing: timedelta = timedelta(hours=1)
) -> list[Event]:
    """n calls (started + ended each) spread over `users` callers, deterministic content,
    `spacing` apart."""
    events: list[Event] = []
    for i in range(n):
        subject = f"{tenant}/+1555000{i % users:04d}"
        source = Source(platform="elevenlabs", event_id=f"conv-{i}", agent_id="agent-1")
        at = BASE_TIME + spacing * i
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


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of ports for the local end of client connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive local ports a test's own server may listen on.

    Not :func:`closed_port`'s: a port the kernel hands out for ``bind(0)`` is in its
    ephemeral range, where every client connection of every test process running side by
    side takes its local port, so one may hold it (or the next one, e.g. a Kafka
    controller's ``port + 1``) by the time the server binds. These are below that range,
    in a slice of their own for each xdist worker, and free when asked.
    """
    low, _ = _ephemeral_ports()
    first, slices = 20000, 8
    if low - first < slices * 100:  # an unusual range: the kernel's choice it is
        return closed_port()
    size = (low - first) // slices
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = first + (int(worker) % slices if worker.isdigit() else 0) * size
    for _ in range(200):
        port = random.randrange(base, base + size - count)
        try:
            for candidate in range(port, port + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no {count} free consecutive port(s) in {base}..{base + size}")


#: Topic prefixes of finished tests, deleted in batches (see :func:`retire_topics`).
_RETIRED: list[str] = []
_RETIRE_BATCH = 25


def retire_topics(settings: Settings) -> None:
    """Delete a finished test's topics (with others', ``_RETIRE_BATCH`` prefixes at a time).

    Every test has topics of its own; a broker keeping all of a suite's would hold tens of
    thousands of partitions and run out of file descriptors. Only this session's prefixes
    are deleted, so test sessions running side by side on one broker do not interfere.
    """
    _RETIRED.append(settings.topic_prefix)
    if len(_RETIRED) >= _RETIRE_BATCH:
        delete_retired_topics(settings)


def delete_retired_topics(settings: Settings) -> None:
    """Delete the topics of every prefix retired so far (at the end of the session)."""
    if not _RETIRED:
        return
    prefixes = tuple(f"{p}." for p in _RETIRED)
    _RETIRED.clear()

    async def delete() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.require_kafka(), **settings.kafka_options()
        )
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    # Fixture teardown may run inside the test's event loop: a loop of its own, in a thread.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(delete())
        except Exception as exc:  # a full broker is the next batch's problem, not a failure
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
