"""Live calls on the real broker and database (services/live; docs/architecture.md, "Live
calls"): a call streamed as Vapi messages through the ingest app is followed by the live
processor (a faust app), which prefetches the caller's memories at each topic shift,
keeps the call's state through a kill -9, and reconstructs a call whose report never
comes — once, and without a duplicate when the report comes after all.

The caller has a history (HISTORY: a call about their allergy, their dentist and their
daughter), projected by every projection before the live call begins.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from psycopg import AsyncConnection

from projections.live import content_terms
from schemas import ConversationEnded, Source, decode_event
from schemas.codec import (
    IdentityCodec,
    get_personal_codec,
    set_personal_codec,
    subject_sealing_codec,
)
from services import tenants
from services.live.worker import RECONSTRUCTED_STATUS, LiveProcessor, app_id
from services.query.app import QueryService
from services.settings import Settings
from streams import EventLog
from streams.subject_keys import SEALED, SEALED_TRANSCRIPT, SubjectKeyCodec
from streams.topics import Topics
from tests.helpers import codec_restored, eventually, group_state, read_topic, scalar
from tests.integration.ingest_fixtures import TENANT, deliver, ingest, payload, tenant
from tests.integration.query.corpus import EMBEDDER, serving
from tests.integration.test_erasure import pipeline, running, settle

__all__ = ["ingest", "tenant"]  # fixtures used by name below

CALLER = "+14155550123"
SUBJECT = f"{TENANT}/{CALLER}"
STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

HISTORY = (
    ("agent", "Bayview Dental, how can I help you today?"),
    ("user", "I'm allergic to penicillin, it gives me hives."),
    ("agent", "Noted, I have added the allergy to your file."),
    ("user", "My dentist is Dr. Patel and I like morning appointments."),
    ("agent", "Dr. Patel in the mornings, got it."),
    ("user", "My daughter Emma needs her braces checked at the orthodontist."),
    ("agent", "I can book Emma with our orthodontist too."),
)

# A live call of 22 turns on three topics: a cleaning, an antibiotic after an extraction
# (the allergy), the daughter's braces. Each topic opens with the caller's turn marked.
LIVE_CALL: tuple[tuple[str, str], ...] = (
    ("agent", "Thanks for calling Bayview Dental, this is Ava."),
    ("user", "Hi Ava, I need to book a dental cleaning with my dentist next week."),  # topic 1
    ("agent", "Of course. Which days work for you?"),
    ("user", "Tuesday or Wednesday."),
    ("agent", "I have Tuesday at nine or Wednesday at eleven."),
    ("user", "Tuesday at nine for the cleaning please."),
    ("agent", "Booked, Tuesday at nine."),
    ("user", "Great."),
    ("agent", "Is there anything else?"),
    ("user", "Yes, after my tooth extraction the surgeon wants to prescribe an antibiotic."),
    ("agent", "Which antibiotic did they mention?"),
    ("user", "Amoxicillin, is that a problem with my allergy?"),
    ("agent", "Amoxicillin is related to penicillin, so let's check with the doctor."),
    ("user", "Okay, please flag it."),
    ("agent", "I have flagged it for the doctor."),
    ("user", "Thank you."),
    ("agent", "Anything else today?"),
    ("user", "One more thing, my daughter Emma has her braces and needs an orthodontist visit."),
    ("agent", "I can book Emma with the orthodontist."),
    ("user", "Thursday after school would be best for her."),
    ("agent", "Thursday at four for Emma."),
    ("user", "Perfect, bye."),
)
SHIFTS = (1, 9, 17)  # the turns that open a topic
TOOL_QUESTION = "Is the caller allergic to any antibiotics?"
#: A sealed value as stored (streams/subject_keys.py): its prefix, key ids and base64.
SEALED_VALUE = re.compile(
    rb"(?:%s|%s)[0-9A-Za-z+/=:]*"
    % (re.escape(SEALED.encode()), re.escape(SEALED_TRANSCRIPT.encode()))
)


def in_clear(raw: bytes) -> bytes:
    """What of `raw` a reader without the keys sees: its bytes less the sealed values. A
    word is looked for there, not in the ciphertext, where a short one turns up by chance:
    b"Emma" is 4 base64 characters, in about 2% of this call's changelog (270 KB sealed)."""
    return SEALED_VALUE.sub(b"", raw)


def vapi_turn(call_id: str, index: int, role: str, text: str) -> dict[str, Any]:
    """Turn `index` of a live call as Vapi sends it: a final transcript message."""
    at = STARTED + timedelta(seconds=5 * index)
    return {
        "message": {
            "type": "transcript",
            "role": "assistant" if role == "agent" else "user",
            "transcriptType": "final",
            "transcript": text,
            "timestamp": int(at.timestamp() * 1000),
            "call": {
                "id": call_id,
                "type": "inboundPhoneCall",
                "startedAt": STARTED.isoformat(),
                "customer": {"number": CALLER},
                "assistantId": "asst-ava",
            },
        }
    }


async def stream_call(
    client: httpx.AsyncClient, call_id: str, turns: Sequence[tuple[str, str]], start: int = 0
) -> None:
    for index, (role, text) in enumerate(turns, start=start):
        response = await deliver(client, "vapi", vapi_turn(call_id, index, role, text))
        assert response.status_code == 200, response.text
        assert [e["type"] for e in response.json()["events"]] == ["turn.said"]


async def history(settings: Settings, db: AsyncConnection[Any]) -> None:
    """The caller's earlier call, through every projection (memories, passages...)."""
    at = STARTED - timedelta(days=20)
    ended = ConversationEnded.create(
        tenant=TENANT,
        subject=SUBJECT,
        source=Source(platform="vapi", event_id="history-1", agent_id="asst-ava"),
        occurred_at=at + timedelta(minutes=4),
        correlation_id="history-1",
        data={
            "conversation_id": "history-1",
            "started_at": at,
            "ended_at": at + timedelta(minutes=4),
            "status": "ended",
            "turns": [
                {"role": role, "text": text, "offset_ms": 10_000 * i}
                for i, (role, text) in enumerate(HISTORY)
            ],
        },
    )
    projections = pipeline()
    async with EventLog(settings) as log, running(settings, projections):
        await log.append(ended)
        await settle(settings, db, projections)


async def prefetches(db: AsyncConnection[Any], call_id: str) -> list[tuple[int, str, list[Any]]]:
    cursor = await db.execute(
        "SELECT seq, topic, hits FROM live.prefetches WHERE conversation_id = %s ORDER BY seq",
        [call_id],
    )
    return [(row[0], row[1], row[2]) for row in await cursor.fetchall()]


@asynccontextmanager
async def processor(settings: Settings, **kwargs: Any) -> AsyncIterator[LiveProcessor]:
    service = QueryService(settings, embedder=EMBEDDER)
    await service.start()
    live = LiveProcessor(settings, service=service, **kwargs)
    try:
        await live.start()
        await live.wait_assigned()
        yield live
    finally:
        await live.close()
        await service.stop()


def live_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.replace(
        **{"live_reconstruct_after_s": 3600.0, "live_grace_s": 3600.0, **changes}
    )


async def reconstructed(settings: Settings, call_id: str) -> list[ConversationEnded]:
    found = []
    for record in await read_topic(settings, Topics(settings.topic_prefix).conversations):
        event = decode_event(record.value)
        if isinstance(event, ConversationEnded) and event.data.conversation_id == call_id:
            found.append(event)
    return found


async def test_a_live_call_streamed_as_vapi_messages_is_prefetched_at_each_topic(
    topics: Settings, db: AsyncConnection[Any], ingest: httpx.AsyncClient, tenant: str
) -> None:
    await history(topics, db)
    async with processor(live_settings(topics)):
        await stream_call(ingest, "live-1", LIVE_CALL)
        found = await eventually(
            lambda: prefetches(db, "live-1"),
            lambda rows: {topic for _, topic, _ in rows} >= {LIVE_CALL[i][1] for i in SHIFTS},
        )
    # Every topic opened by a caller's turn with something to say; never by a short reply.
    opened = [topic for _, topic, _ in found]
    assert all(len(content_terms(topic)) >= 2 for topic in opened), opened
    assert [seq for seq, _, _ in found] == list(range(1, len(found) + 1))
    by_topic = {topic: " | ".join(hit["text"] for hit in hits) for _, topic, hits in found}
    # Each shift brought what the caller said about it before.
    assert "penicillin" in by_topic[LIVE_CALL[9][1]].lower(), by_topic
    assert "emma" in by_topic[LIVE_CALL[17][1]].lower(), by_topic
    assert (
        "patel" in by_topic[LIVE_CALL[1][1]].lower()
        or "dentist" in by_topic[LIVE_CALL[1][1]].lower()
    ), by_topic
    # And each prefetch is on the log, sealed like the rest.
    live_topic = Topics(topics.topic_prefix).name("live")
    logged = [decode_event(r.value) for r in await read_topic(topics, live_topic)]
    assert sum(e.type == "context.prefetched" for e in logged) == len(found)
    assert sum(e.type == "turn.said" for e in logged) == len(LIVE_CALL)
    raw = in_clear(b"".join(r.value for r in await read_topic(topics, live_topic)))
    assert b"penicillin" not in raw and b"Emma" not in raw
    # The calls' state in the table's changelog topic is sealed too.
    changelog = await read_topic(topics, f"{app_id(topics)}-calls-changelog")
    state = b"".join(r.value or b"" for r in changelog)
    assert changelog and b"conversation_id" in state
    # On the partition number of the subject's events, as every topic places a subject.
    live_records = await read_topic(topics, live_topic)
    assert {r.partition for r in changelog} == {r.partition for r in live_records}
    assert len({r.partition for r in live_records}) == 1
    clear = in_clear(state)
    assert b"penicillin" not in clear and b"Emma" not in clear and b"Amoxicillin" not in clear
    assert CALLER.encode() not in clear  # the subject too is sealed

    # The agent's memory-search tool, asked mid-call, answers from the prefetched set.
    token = (await tenants.issue_api_key(db, TENANT, "agent", scopes=["agent"])).token
    before = prefetched_answers()
    async with serving(topics) as client:
        response = await client.post(
            "/v1/tools/vapi",
            headers={"Authorization": f"Bearer {token}"},
            json=vapi_tool_call("live-1", TOOL_QUESTION),
        )
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert "penicillin" in result["result"].lower(), result
    assert prefetched_answers() == before + 1


def prefetched_answers() -> float:
    value = REGISTRY.get_sample_value("memstream_tool_answers_total", {"source": "prefetched"})
    return value or 0.0


def vapi_tool_call(call_id: str, question: str) -> dict[str, Any]:
    return {
        "message": {
            "type": "tool-calls",
            "call": {"id": call_id, "customer": {"number": CALLER}},
            "toolCallList": [
                {"id": "tc-1", "name": "memory_search", "arguments": {"query": question}}
            ],
        }
    }


async def test_a_redelivered_turn_is_folded_and_prefetched_once(
    topics: Settings, db: AsyncConnection[Any], ingest: httpx.AsyncClient, tenant: str
) -> None:
    await history(topics, db)
    async with processor(live_settings(topics)):
        await stream_call(ingest, "live-2", LIVE_CALL[:2])
        await stream_call(ingest, "live-2", LIVE_CALL[1:2], start=1)  # the platform retried
        rows = await eventually(lambda: prefetches(db, "live-2"), lambda rows: len(rows) == 1)
        await stream_call(ingest, "live-2", LIVE_CALL[2:4], start=2)
        await eventually(
            lambda: scalar(
                db, "SELECT count(*) FROM live.prefetches WHERE conversation_id = 'live-2'"
            ),
            lambda n: n >= 1,
        )
    assert rows[0][1] == LIVE_CALL[1][1]


def spawn_processor(settings: Settings) -> subprocess.Popen[bytes]:
    """`python -m services.live` (the live processor alone) with these settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.live"],
        env={**os.environ, **settings.to_env(), "MEMSTREAM_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def stable_group(settings: Settings) -> None:
    await eventually(
        lambda: group_state(settings, app_id(settings)),
        lambda state: state == ("Stable", 1),
        timeout=90,
    )


async def test_the_processor_killed_mid_call_keeps_the_calls_state(
    topics: Settings, db: AsyncConnection[Any], ingest: httpx.AsyncClient, tenant: str
) -> None:
    await history(topics, db)
    settings = live_settings(topics)
    first = spawn_processor(settings)
    try:
        await stable_group(settings)
        await stream_call(ingest, "live-3", LIVE_CALL[:12])
        await eventually(
            lambda: prefetches(db, "live-3"),
            lambda rows: LIVE_CALL[9][1] in {topic for _, topic, _ in rows},
        )
    finally:
        first.send_signal(signal.SIGKILL)  # mid-call: no clean shutdown
        first.wait(timeout=30)
    # The killed member leaves the group after its session timeout; then a new one joins.
    await eventually(
        lambda: group_state(settings, app_id(settings)),
        lambda state: state[1] == 0,
        timeout=60,
    )
    second = spawn_processor(settings)
    try:
        await stable_group(settings)
        await stream_call(ingest, "live-3", LIVE_CALL[12:], start=12)
        # The shift after the crash is prefetched too.
        await eventually(
            lambda: prefetches(db, "live-3"),
            lambda rows: LIVE_CALL[17][1] in {topic for _, topic, _ in rows},
            timeout=90,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, second.stderr.read().decode() if second.stderr else ""
    # The state (every turn, from before the kill and after) is in the changelog: a
    # processor whose clock is an hour on reconstructs the call from all of them.
    async with processor(settings, clock=lambda: time.time() + 3600, tick_s=0.2):
        [ended] = await eventually(
            lambda: reconstructed(settings, "live-3"), lambda found: len(found) == 1
        )
    assert ended.data.status == RECONSTRUCTED_STATUS
    assert [(t.role, t.text) for t in ended.data.turns] == list(LIVE_CALL)
    assert [t.offset_ms for t in ended.data.turns] == [5000 * i for i in range(len(LIVE_CALL))]


@pytest.mark.parametrize("late_report", [False, True])
async def test_a_call_without_its_report_is_reconstructed_once(
    topics: Settings,
    db: AsyncConnection[Any],
    ingest: httpx.AsyncClient,
    tenant: str,
    late_report: bool,
) -> None:
    await history(topics, db)
    settings = live_settings(topics, live_reconstruct_after_s=1.0, live_grace_s=3600.0)
    projections = pipeline()
    # The processor's clock stands still while the call streams in (a loaded machine may
    # fold two turns more than the 1 s apart), then moves past the wait for a report.
    now = [time.time()]
    sealing = subject_sealing_codec()
    subject = f"{TENANT}/{CALLER}"
    key = subject if sealing is None else sealing.pseudonym(subject)
    async with running(settings, projections):
        async with processor(settings, clock=lambda: now[0], tick_s=0.2) as live:
            await stream_call(ingest, "live-4", LIVE_CALL)

            async def folded() -> int:
                call = live._calls(key.encode()).calls.get("live-4")
                return len(call.turns) if call else 0

            await eventually(folded, lambda turns: turns == len(LIVE_CALL))
            now[0] += 2.0
            [ended] = await eventually(
                lambda: reconstructed(settings, "live-4"), lambda found: len(found) == 1
            )
            await asyncio.sleep(1.5)  # more ticks: the call is not reconstructed again
            assert len(await reconstructed(settings, "live-4")) == 1
        assert ended.data.status == RECONSTRUCTED_STATUS and len(ended.data.turns) == 22
        await settle(settings, db, projections)
        assert await platform_status(db, "live-4") == RECONSTRUCTED_STATUS
        memories = await memory_rows(db)
        assert any("emma" in content.lower() for content, _ in memories), memories
        if late_report:
            report = payload("vapi_end_of_call_report")
            report["message"]["call"]["id"] = "live-4"
            report["message"]["call"]["customer"] = {"number": CALLER}
            report["message"]["artifact"]["messages"] = [
                {
                    "role": "bot" if role == "agent" else "user",
                    "message": text,
                    "secondsFromStart": 5 * i,
                    "time": int((STARTED + timedelta(seconds=5 * i)).timestamp() * 1000),
                }
                for i, (role, text) in enumerate(LIVE_CALL)
            ]
            response = await deliver(ingest, "vapi", report)
            assert response.status_code == 200, response.text
            await settle(settings, db, projections)
            # The report replaces the reconstruction; what it repeats duplicates nothing.
            assert await memory_rows(db) == memories
            assert await platform_status(db, "live-4") not in (None, RECONSTRUCTED_STATUS)


async def memory_rows(db: AsyncConnection[Any]) -> list[tuple[str, int]]:
    cursor = await db.execute(
        "SELECT content, reinforcement_count FROM memories.memories"
        " WHERE subject = %s AND state = 'active' ORDER BY content",
        [SUBJECT],
    )
    return [(row[0], row[1]) for row in await cursor.fetchall()]


async def platform_status(db: AsyncConnection[Any], call_id: str) -> str | None:
    status: str | None = await scalar(
        db,
        "SELECT platform_status FROM conversations.conversations WHERE conversation_id = %s",
        call_id,
    )
    return status


async def test_the_processor_seals_its_state_however_it_is_started(topics: Settings) -> None:
    # Started without the process having installed the codec (not through `serve`): it
    # installs it itself, as every projection runner does, before its table is written
    # (its state would otherwise be sealed by whatever codec the process had).
    with codec_restored():
        set_personal_codec(IdentityCodec())
        live = LiveProcessor(live_settings(topics))  # with a query service of its own
        try:
            await live.start()
            assert isinstance(get_personal_codec(), SubjectKeyCodec)
        finally:
            await live.close()
