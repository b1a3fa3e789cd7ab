"""The audit trail's writer, its read model and `memstream audit` (streams/audit.py,
projections/audit, services/cli/audit.py), on a real broker and database. The query
service's routes are in tests/integration/query/test_audit.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any, ClassVar

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from projections.audit import AuditProjection, audit_trail
from schemas import Source, UserForgotten, encode_event, event_key, new_event_id
from services import tenants
from services.ingest.app import create_app as create_ingest
from services.settings import Settings
from streams import EventLog
from streams.audit import ERASURE, READ, AuditEntry, AuditTrail, decode_entry, subject_hash
from streams.exceptions import AuditUnavailable
from streams.projection import Projection
from streams.topics import Topics
from tests.helpers import BASE_TIME, eventually, read_topic
from tests.integration.projection_contract import ProjectionContract, project

TENANT = "acme"
CALLERS = [f"{TENANT}/+1415555{i:04d}" for i in range(5)]


def entries(count: int) -> list[AuditEntry]:
    """Reads and erasures of five callers of two tenants by two keys, an hour apart."""
    return [
        AuditEntry(
            id=new_event_id(),
            type=ERASURE if i % 7 == 6 else READ,
            tenant=TENANT if i % 4 else "beta",
            subject_hash=subject_hash(
                CALLERS[i % 5] if i % 4 else CALLERS[i % 5].replace(TENANT, "beta", 1)
            ),
            key_id=f"key{i % 2}",
            route="POST /v1/memories/search",
            at=BASE_TIME + timedelta(hours=i),
            status=200,
            results=i % 3,
            conversation_id=f"call-{i}" if i % 2 else None,
        )
        for i in range(count)
    ]


async def append_entries(log: EventLog, items: list[AuditEntry]) -> None:
    await asyncio.gather(
        *(log.append_raw(log.topics.audit, e.key(), e.encode(), e.headers()) for e in items)
    )


class TestAuditContract(ProjectionContract):
    projection: ClassVar[type[Projection[Any]]] = AuditProjection

    def events(self) -> list[Any]:
        return entries(40)

    async def append(self, log: EventLog, events: list[Any]) -> None:
        await append_entries(log, events)


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_full_buffer_holds_requests_briefly_then_refuses_and_loses_nothing(
    topics: Settings,
) -> None:
    log = EventLog(topics)  # not started yet: the broker "does not answer"
    trail = AuditTrail(log, capacity=2, flush_interval_s=0.01, wait_s=0.2)
    await trail.start()
    try:
        for caller in CALLERS[:2]:  # room for two: recorded at once
            await trail.record(READ, TENANT, caller, key_id="k", route="GET /x")
        waits, refused = (
            sample("memstream_audit_waits_total"),
            sample("memstream_audit_refused_total"),
        )
        began = time.monotonic()
        with pytest.raises(AuditUnavailable):
            await trail.record(READ, TENANT, CALLERS[2], key_id="k", route="GET /x")
        assert 0.2 <= time.monotonic() - began < 1.0  # held for `wait_s`, not longer
        assert sample("memstream_audit_waits_total") == waits + 1
        assert sample("memstream_audit_refused_total") == refused + 1
        assert trail.buffered == 2

        await log.start()  # the broker is back: the buffered entries go out

        async def buffered() -> int:
            return trail.buffered

        # A readiness wait, not a race with `wait_s`: the first send after the start
        # fetches metadata and can take longer than 0.2 s on a loaded machine.
        await eventually(buffered, lambda n: n == 0, timeout=30)
        await trail.record(READ, TENANT, CALLERS[3], key_id="k", route="GET /x")
    finally:
        await trail.close()
        await log.stop()
    appended = [decode_entry(r.value) for r in await read_topic(topics, log.topics.audit)]
    assert sorted(e.subject_hash for e in appended) == sorted(
        subject_hash(c) for c in (CALLERS[0], CALLERS[1], CALLERS[3])
    )
    with pytest.raises(AuditUnavailable):  # closed: nothing is taken that would be lost
        await trail.record(READ, TENANT, CALLERS[4], key_id="k", route="GET /x")


async def test_an_entry_names_its_subject_only_by_the_pseudonym(topics: Settings) -> None:
    async with EventLog(topics) as log:
        trail = AuditTrail(log)
        await trail.start()
        await trail.record(READ, TENANT, CALLERS[0], key_id="k1", route="GET /v1/users/{user}")
        await trail.close()
    [record] = await read_topic(topics, log.topics.audit)
    raw = record.key + record.value + b"".join(v for _, v in record.headers)
    assert b"4155550000" not in raw
    hashed = subject_hash(CALLERS[0])
    assert len(hashed) == 32 and record.key == f"{TENANT}/{hashed}".encode()
    # The same hash as the record key of the caller's events: the same partition.
    forgotten = UserForgotten.create(
        tenant=TENANT, subject=CALLERS[0], source=Source(platform="api"),
        occurred_at=BASE_TIME, data={},
    )  # fmt: skip
    assert record.key == event_key(forgotten)
    assert [h for h, _ in record.headers] == ["type", "v"]


def memstream(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **settings.to_env(), "MEMSTREAM_LOG_LEVEL": "WARNING"},
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip


async def test_the_read_model_holds_the_trail_and_memstream_audit_prints_it(
    topics: Settings, db: Any
) -> None:
    history = entries(40)
    async with EventLog(topics) as log:
        await append_entries(log, history)
    await project(topics, AuditProjection())

    caller = CALLERS[1]  # entries 1, 21, 41... of tenant acme: i % 5 == 1 and i % 4 != 0
    expected = sorted(
        (e for e in history if e.tenant == TENANT and e.subject_hash == subject_hash(caller)),
        key=lambda e: e.at,
        reverse=True,
    )
    rows = await audit_trail(db, TENANT, subject_hash=subject_hash(caller))
    assert [r["entry_id"] for r in rows] == [e.id for e in expected] and expected

    result = memstream(topics, "audit", "--tenant", TENANT, "--user", "+14155550001", "--json")
    assert result.returncode == 0, result.stderr
    shown = orjson.loads(result.stdout)
    assert shown["subject_hash"] == subject_hash(caller)
    assert [e["entry_id"] for e in shown["entries"]] == [str(e.id) for e in expected]
    assert {e["type"] for e in shown["entries"]} <= {READ, ERASURE}
    assert b"4155550001" not in result.stdout.replace(b"+14155550001", b"")

    since = (expected[0].at - timedelta(minutes=1)).isoformat()
    text = memstream(
        topics, "audit", "--tenant", TENANT, "--user", "+14155550001", "--since", since
    )
    assert text.returncode == 0, text.stderr
    assert b"POST /v1/memories/search" in text.stdout and b"1 entry" in text.stdout

    by_key = memstream(topics, "audit", "--tenant", TENANT, "--key", "key1", "--json")
    assert {e["key_id"] for e in orjson.loads(by_key.stdout)["entries"]} == {"key1"}
    assert memstream(topics, "audit", "--tenant", TENANT).returncode == 2


async def test_memstream_audit_says_so_when_the_read_model_is_not_built(topics: Settings) -> None:
    result = memstream(topics, "audit", "--tenant", TENANT, "--user", "+14155550001")
    assert result.returncode == 3
    assert b"memstream projections run audit" in result.stderr


async def test_an_erasure_through_the_events_api_is_recorded(topics: Settings, db: Any) -> None:
    await tenants.create_tenant(db, TENANT, "Acme Dental")
    key = await tenants.issue_api_key(db, TENANT, "privacy desk", ["admin"])
    erasure = UserForgotten.create(
        tenant=TENANT, subject=CALLERS[2], source=Source(platform="api", event_id="forget-1"),
        occurred_at=BASE_TIME, data={"reason": "asked by phone"},
    )  # fmt: skip
    app = create_ingest(topics)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as ingest:
            response = await ingest.post(
                "/v1/events",
                content=encode_event(erasure),
                headers={"Authorization": f"Bearer {key.token}"},
            )
    assert response.status_code == 200, response.text
    [record] = await read_topic(topics, Topics(topics.topic_prefix).audit)
    entry = decode_entry(record.value)
    assert (entry.type, entry.route, entry.key_id) == (ERASURE, "POST /v1/events", key.key_id)
    assert entry.subject_hash == subject_hash(CALLERS[2]) and entry.tenant == TENANT
    assert b"4155550002" not in record.key + record.value


async def test_an_erasure_through_memstream_users_forget_is_recorded(topics: Settings) -> None:
    result = memstream(topics, "users", "forget", TENANT, "+14155550003", "--no-wait", "--json")
    assert result.returncode == 0, result.stderr
    [record] = await read_topic(topics, Topics(topics.topic_prefix).audit)
    entry = decode_entry(record.value)
    assert (entry.type, entry.route) == (ERASURE, "memstream users forget")
    assert entry.key_id is not None and entry.key_id.startswith("cli:")
    assert entry.subject_hash == subject_hash(CALLERS[3])
