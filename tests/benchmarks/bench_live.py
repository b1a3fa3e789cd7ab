"""Live calls (services/live; docs/architecture.md, "Live calls"): how soon a caller's
turn that opens a new topic has the caller's memories prefetched, with 200 calls going on
at once, and how fast the agent's tool answers from what was prefetched.

Setup, on the benchmark's own topics and database, personal data encrypted (this
process seals what it appends, as ingest does): 200 callers (one tenant, valid US
numbers), each with one earlier call, a ``conversation.ended`` of 8 turns saying 3 or 4
facts built from templates and varied per caller (an allergy, their dentist's or
doctor's name, a family member, a new address or a preference), appended and projected
by every projection memstream runs (in this process: the rule-based extractor, the local
embedding model) until all of them caught up.

1. **Prefetch latency** (target: p95 <= 200 ms). The live processor runs as its own
   process, ``python -m services.live`` with the benchmark's settings (``to_env``), as
   ``memstream live`` deploys it: one worker, the consumer group ``<prefix>.live`` Stable
   with 1 member before anything is sent, then a few warm-up calls (other call ids, not
   measured) until their prefetches are rows, so the worker reads from the live topic's
   end and its embedder and pool are warm. Then 200 calls at once, each a scripted call
   of 20 turns alternating agent and caller, one turn every 3 s per call (so 66.7 turns/s
   in all), the calls' starts spread evenly over the first 3 s. Each turn is a
   ``turn.said`` appended through one shared ``EventLog`` (``append``, awaited until the
   broker acknowledged it), its ``recorded_at`` set when it is built, just before. In
   each call 2 or 3 of the caller's turns open a topic about the caller's facts (the
   processor's rule decides: a cosine under 0.3 with the current topic), each followed
   by a caller's turn on the same topic (embedded, joins it); the other caller's turns are
   short replies ("Okay.", "Yes, please.") that are never embedded, as the processor
   skips them. The clock of a caller's turn starts on this machine's wall clock just
   before its ``append``; it stops at the prefetch row's ``created_at`` in
   ``live.prefetches`` (PostgreSQL's ``now()`` of the autocommit ``INSERT``, a few
   hundred microseconds before the row is readable; the same machine's clock, so broker
   and database must be local). A row is matched to its turn by its ``event_id``,
   ``derived_event_id("context.prefetched", turn id)``. The rows are read once they
   stopped growing for 5 s after the last turn. Every prefetch is timed, including one a
   turn not meant to open a topic made (counted in the conditions). The processor's CPU
   (user + system, /proc) is given as a share of one core over the phase, and per turn
   appended (the agent's and the caller's) from the first turn until the rows settled.
2. **Tool answer latency** (target: p95 <= 5 ms). After the live phase, with the
   processor stopped and its rows kept, ``POST /v1/tools/vapi`` (a Vapi ``tool-calls``
   message naming a measured call and its caller's number) is asked 500 times (after 20
   unmeasured) of the query app in this process through ``httpx.ASGITransport``: no
   network, no server, but the whole route (API key of scope ``agent``, rate limit,
   the caller bound from the call, the call's prefetches read, the answer's audit
   entry). Each question holds two words of one prefetched hit's text of a random call,
   so the prefetches cover it: the answer must come from them, which the counter
   ``memstream_tool_answers_total{source="prefetched"}`` proves (it must grow by exactly
   the number of requests, or the benchmark fails). Requests go one at a time, 40 a
   second (under the key's default rate limit of 50 a second).

Why: the prefetch is only useful if it is there before the agent needs it, i.e. within
the caller's turn and the agent's reply being generated (a few hundred ms); and the tool
answering from it must cost next to nothing next to a search (embedding + ranking).

A smaller run: ``MEMSTREAM_BENCH_LIVE_CALLS=20 MEMSTREAM_BENCH_LIVE_TURNS=10`` (20 calls
of 10 turns, a 30 s phase) or ``--scale`` (calls and tool requests); with ``--no-docs``
so that docs/benchmarks.md keeps its published figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY
from psycopg import AsyncConnection

from projections import PROJECTIONS, build
from projections.live import content_terms
from schemas import (
    ConversationEnded,
    Source,
    TurnSaid,
    derived_event_id,
)
from services import tenants
from services.identity import normalise_phone
from services.live.worker import app_id
from services.query.app import create_app as create_query_app
from services.settings import Settings
from streams import EventLog, versions
from streams.subject_keys import install_personal_codec
from streams.topics import ensure_topics
from tests.benchmarks.bench_personal_data import running
from tests.benchmarks.harness import (
    BenchmarkContext,
    Figure,
    at_most,
    input_outside_gc,
    percentile,
)
from tests.helpers import closed_port, codec_restored, group_state

logger = logging.getLogger(__name__)

TENANT = "bench"
#: Calls going on at once (``MEMSTREAM_BENCH_LIVE_CALLS`` overrides; ``--scale`` scales).
CALLS = 200
#: Turns per call, agent and caller alternating (``MEMSTREAM_BENCH_LIVE_TURNS`` overrides).
TURNS = 20
TURN_INTERVAL_S = 3.0
WARMUP_CALLS = 4
TOOL_REQUESTS = 500
TOOL_WARMUP = 20
TOOL_RATE = 40.0
HISTORY_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 90.0
SETTLED_AFTER_S = 5.0
SETTLE_TIMEOUT_S = 300.0
PREFETCH_P95_TARGET_MS = 200.0
TOOL_P95_TARGET_MS = 5.0
HISTORY_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
AGENT_ID = "asst-bench"

# -- the callers and what they say -----------------------------------------------------------

ALLERGIES = (
    "penicillin", "peanuts", "latex", "sulfa drugs", "ibuprofen", "shellfish", "codeine",
    "bee stings", "aspirin",
)  # fmt: skip
DOCTORS = (
    ("dentist", "Dr. Patel"), ("doctor", "Dr. Nguyen"), ("dentist", "Dr. Alvarez"),
    ("doctor", "Dr. Kim"), ("dentist", "Dr. Okafor"), ("doctor", "Dr. Lindqvist"),
    ("dentist", "Dr. Haddad"),
)  # fmt: skip
FAMILY = (
    ("daughter", "Emma"), ("son", "Lucas"), ("wife", "Maria"), ("husband", "David"),
    ("mother", "Ruth"), ("father", "Ahmed"), ("daughter", "Sofia"), ("son", "Noah"),
)  # fmt: skip
ADDRESSES = (
    ("Sacramento", "12 Oak Street"), ("Oakland", "48 Harbor Road"), ("Fresno", "7 Elm Avenue"),
    ("San Jose", "230 Mission Boulevard"), ("Berkeley", "19 Cedar Lane"),
    ("Modesto", "5 Pine Court"),
)  # fmt: skip
PREFERENCES = (
    "morning appointments", "text reminders instead of phone calls",
    "appointments after work, around five", "a quiet room because I get anxious",
    "Spanish-speaking staff",
)  # fmt: skip

#: Each live topic: the caller's turn that opens it, and a follow-up on it.
TOPICS = {
    "allergy": (
        "My {role} wants to prescribe an antibiotic, is that safe with my allergy?",
        "Which antibiotic would that be, and could it react with my allergy?",
    ),
    "doctor": (
        "Can I book an appointment with {doctor} next week?",
        "Does {doctor} have a slot on Tuesday morning?",
    ),
    "family": (
        "I'd also like to schedule a checkup for my {relation} {name}.",
        "{name} is free most afternoons for the checkup.",
    ),
    "address": (
        "Please send the bill to my new address, I moved to {city}.",
        "The bill should go to {address} in {city}.",
    ),
}
#: Orders of topics whose neighbours are far apart (all-MiniLM-L6-v2 cosines under 0.3):
#: for callers who gave an address, and for the others.
WITH_ADDRESS = (
    ("allergy", "address", "doctor"),
    ("family", "allergy", "address"),
    ("doctor", "address", "allergy"),
    ("address", "family", "allergy"),
)
WITHOUT_ADDRESS = (("family", "allergy", "doctor"), ("doctor", "allergy", "family"))
#: A caller's turns that are never embedded (fewer than two content words).
REPLIES = (
    "Okay.", "Yes, please.", "Thank you.", "Sure.", "That's right.", "Alright, thanks.",
    "Yes.", "No, that's all.",
)  # fmt: skip
AGENT_LINES = (
    "Let me check that for you.", "One moment, I'm looking at your file.",
    "I can help with that.", "Got it, I've noted that.", "Sure, let me see what we have.",
    "Is there anything else I can do for you?", "Thanks, that's all set.",
)  # fmt: skip
GREETING = "Thanks for calling Bayview Clinic, this is Ava. How can I help you today?"


@dataclass(frozen=True)
class Caller:
    index: int
    phone: str
    allergy: str
    role: str
    doctor: str
    relation: str
    name: str
    city: str
    address: str
    preference: str
    #: What the earlier call said besides the allergy, the doctor and the family member.
    fourth: str  # "address", "preference" or "" (3 facts)

    @property
    def subject(self) -> str:
        return f"{TENANT}/{self.phone}"

    def fill(self, template: str) -> str:
        return template.format(
            role=self.role, doctor=self.doctor, relation=self.relation, name=self.name,
            city=self.city, address=self.address, allergy=self.allergy,
            preference=self.preference,
        )  # fmt: skip


def callers(count: int) -> list[Caller]:
    """`count` callers, their facts varied (the pools' sizes are coprime-ish)."""
    found = []
    for i in range(count):
        phone = normalise_phone(f"+1415{5_570_000 + i:07d}")
        assert phone is not None, i
        role, doctor = DOCTORS[i % len(DOCTORS)]
        relation, name = FAMILY[(i * 3) % len(FAMILY)]
        city, address = ADDRESSES[(i * 5) % len(ADDRESSES)]
        found.append(
            Caller(
                index=i,
                phone=phone,
                allergy=ALLERGIES[i % len(ALLERGIES)],
                role=role,
                doctor=doctor,
                relation=relation,
                name=name,
                city=city,
                address=address,
                preference=PREFERENCES[(i * 7) % len(PREFERENCES)],
                fourth=("address", "address", "preference", "")[i % 4],
            )
        )
    return found


def history(caller: Caller) -> ConversationEnded:
    """The caller's earlier call: 8 turns, 3 or 4 facts."""
    c = caller
    last = {
        "address": f"Also, I moved to {c.city}, my new address is {c.address}.",
        "preference": f"One more thing, I prefer {c.preference}.",
        "": "That's all for today, thank you.",
    }[c.fourth]
    lines = (
        ("agent", "Thanks for calling Bayview Clinic, how can I help you today?"),
        ("user", f"I need to update my file, I'm allergic to {c.allergy}."),
        ("agent", f"Thank you, the {c.allergy} allergy is on your file now."),
        ("user", f"My {c.role} is {c.doctor}."),
        ("agent", f"{c.doctor}, noted."),
        ("user", f"My {c.relation} {c.name} will need a checkup soon as well."),
        ("agent", f"I can book {c.name} whenever you're ready."),
        ("user", last),
    )
    at = HISTORY_AT + timedelta(minutes=c.index)
    conversation = f"history-{c.index}"
    return ConversationEnded.create(
        tenant=TENANT,
        subject=c.subject,
        source=Source(platform="vapi", event_id=conversation, agent_id=AGENT_ID),
        occurred_at=at + timedelta(minutes=4),
        correlation_id=conversation,
        data={
            "conversation_id": conversation,
            "started_at": at,
            "ended_at": at + timedelta(minutes=4),
            "duration_secs": 240.0,
            "status": "ended",
            "turns": [
                {"role": role, "text": text, "offset_ms": 15_000 * i}
                for i, (role, text) in enumerate(lines)
            ],
        },
    )


@dataclass(frozen=True)
class Line:
    role: str  # "agent" or "user"
    text: str
    opens: bool  # a caller's turn meant to open a topic


def script(caller: Caller, turns: int) -> list[Line]:
    """A live call of `turns` turns, agent first: 2 or 3 topics about the caller's facts
    (fewer in a call too short for them), each opened by a caller's turn and followed by
    one on it; the caller's other turns are short replies."""
    orders = WITH_ADDRESS if caller.fourth == "address" else WITHOUT_ADDRESS
    order = orders[caller.index % len(orders)]
    said = turns // 2  # the caller's turns
    topics = order[: min(3 if caller.index % 2 == 0 else 2, max(1, said // 2))]
    lines: list[Line | None] = [None] * said
    for j, topic in enumerate(topics):
        at = j * said // len(topics)
        opener, follow_up = TOPICS[topic]
        lines[at] = Line("user", caller.fill(opener), True)
        if at + 1 < said and lines[at + 1] is None:
            lines[at + 1] = Line("user", caller.fill(follow_up), False)
    replies = iter(REPLIES[(caller.index + k) % len(REPLIES)] for k in range(said))
    user = [line or Line("user", next(replies), False) for line in lines]
    call: list[Line] = []
    for k in range(turns):
        if k % 2 == 0:
            text = GREETING if k == 0 else AGENT_LINES[(caller.index + k) % len(AGENT_LINES)]
            call.append(Line("agent", text, False))
        else:
            call.append(user[k // 2])
    return call


# -- the run ------------------------------------------------------------------------------


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    await ensure_topics(settings)
    with codec_restored():
        install_personal_codec(settings, check=True)
        try:
            return await _run(ctx, settings)
        finally:
            await _delete_processor_topics(settings)
            shutil.rmtree(Path(settings.home) / "live" / app_id(settings), ignore_errors=True)


def _sizes(ctx: BenchmarkContext) -> tuple[int, int, int]:
    calls = int(os.environ.get("MEMSTREAM_BENCH_LIVE_CALLS") or ctx.scaled(CALLS))
    turns = int(os.environ.get("MEMSTREAM_BENCH_LIVE_TURNS") or TURNS)
    return calls, turns, ctx.scaled(TOOL_REQUESTS)


async def _run(ctx: BenchmarkContext, settings: Settings) -> list[Figure]:
    calls, turns, requests = _sizes(ctx)
    people = callers(calls)
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as db:
        await tenants.create_tenant(db, TENANT, "Bench", default_region="US")
        token = (await tenants.issue_api_key(db, TENANT, "bench-agent", scopes=["agent"])).token
        began = time.perf_counter()
        await _project_histories(settings, db, people)
        memories = await _count(db, "memories.memories")
        passages = await _count(db, "conversations.passages")
        logger.info(
            "%d histories projected in %.0f s: %d memories, %d passages",
            calls, time.perf_counter() - began, memories, passages,
        )  # fmt: skip

        with tempfile.TemporaryDirectory(prefix="bench-live-") as scratch:
            async with _processor(settings, Path(scratch)) as processor:
                async with EventLog(settings) as log:
                    await _warm_up(log, db, people[:WARMUP_CALLS])
                    phase = await _live_phase(log, db, people, turns, processor)
                counters = await processor.counters()
            rows = await _prefetch_rows(db)

    measured = [r for r in rows if r.conversation_id.startswith("live-")]
    matched = _match(measured, phase.turns)
    latencies = [
        (row.created_at.timestamp() - turn.appending_at) * 1000
        for row in measured
        if (turn := matched.get(row.event_id)) is not None
    ]
    unmatched = len(measured) - len(latencies)
    opened = {turn.event_id for turn in matched.values()}
    intended = [t for t in phase.turns.values() if t.opens]
    missed = sum(1 for t in intended if t.event_id not in opened)
    off_script = sum(1 for turn in matched.values() if not turn.opens)
    hits = [len(r.hits) for r in measured]
    memory_hits = sum(1 for r in measured for h in r.hits if h.get("kind") == "memory")
    if not latencies:
        raise RuntimeError(f"no prefetch of a measured call was made; processor: {counters}")
    logger.info(
        "prefetch latency p50 %.0f ms, p95 %.0f ms, max %.0f ms over %d prefetches",
        percentile(latencies, 50), percentile(latencies, 95), max(latencies), len(latencies),
    )  # fmt: skip

    tool_ms, calls_asked = await _tool_answers(settings, token, measured, requests)
    logger.info(
        "tool answer p50 %.2f ms, p95 %.2f ms", percentile(tool_ms, 50), percentile(tool_ms, 95)
    )

    caller_turns = len(phase.turns)
    params: dict[str, Any] = {
        "calls": calls,
        "turns_per_call": turns,
        "turn_interval_s": TURN_INTERVAL_S,
        "intended_turn_rate_per_s": round(calls / TURN_INTERVAL_S, 1),
        "callers_with_history": calls,
        "history": "1 call of 8 turns each, 3-4 facts; every projection caught up",
        "history_memories": memories,
        "history_passages": passages,
        "caller_turns": caller_turns,
        "topic_openers_scripted": len(intended),
        "prefetches": len(latencies),
        "scripted_openers_not_prefetched": missed,
        "prefetches_on_other_turns": off_script,
        "prefetch_rows_unmatched": unmatched,
        "hits_per_prefetch_mean": round(sum(hits) / len(hits), 2) if hits else 0,
        "memory_hits_share": round(memory_hits / max(1, sum(hits)), 3),
        "processor": "python -m services.live, 1 worker, local embedding model",
        "processor_counters_with_warmup": counters,
        "processor_cpu_s": round(phase.processor_cpu_s, 2),
        "partitions": settings.partitions,
        "encryption": "on",
        "append_p99_ms": round(percentile(phase.appends_ms, 99), 1),
        "schedule_lateness_p99_ms": round(percentile(phase.lateness_ms, 99), 1),
        "load_generator_cpu_share": round(phase.generator_cpu_share, 3),
        "max_ms": round(max(latencies), 1),
        "timed": "wall clock just before EventLog.append of the caller's turn.said until"
        " the prefetch row's created_at (PostgreSQL now() of its INSERT)",
    }
    tool_params: dict[str, Any] = {
        "requests": len(tool_ms),
        "warmup": TOOL_WARMUP,
        "rate_per_s": TOOL_RATE,
        "calls_asked": calls_asked,
        "route": "POST /v1/tools/vapi, in process (httpx.ASGITransport, no network)",
        "answered_from_prefetches": "all (memstream_tool_answers_total{source=prefetched})",
        "timed": "client.post until the response: auth, rate limit, caller bound, prefetches"
        " read and matched, audit entry recorded",
    }
    return [
        ctx.figure("prefetch latency p50", percentile(latencies, 50), "ms", params=params),
        ctx.figure(
            "prefetch latency p95",
            percentile(latencies, 95),
            "ms",
            at_most(PREFETCH_P95_TARGET_MS),
            params=params,
        ),
        ctx.figure("prefetch latency p99", percentile(latencies, 99), "ms", params=params),
        ctx.figure("prefetch latency max", max(latencies), "ms", params=params),
        ctx.figure("prefetches", len(latencies), "prefetches", params=params),
        ctx.figure("caller turns", caller_turns, "turns", params=params),
        ctx.figure("achieved turn rate", phase.turn_rate, "turns/s", params=params),
        ctx.figure(
            "processor CPU over the live phase",
            phase.processor_cpu_share * 100,
            "% of a core",
            params=params,
        ),
        ctx.figure(
            "processor CPU per turn (agent's and caller's)",
            phase.processor_cpu_s * 1000 / phase.appended,
            "ms",
            params=params,
        ),
        ctx.figure("tool answer p50", percentile(tool_ms, 50), "ms", params=tool_params),
        ctx.figure(
            "tool answer p95",
            percentile(tool_ms, 95),
            "ms",
            at_most(TOOL_P95_TARGET_MS),
            params=tool_params,
        ),
        ctx.figure("tool answer p99", percentile(tool_ms, 99), "ms", params=tool_params),
    ]


async def _count(db: AsyncConnection[Any], table: str) -> int:
    cursor = await db.execute(f"SELECT count(*) FROM {table}")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _project_histories(
    settings: Settings, db: AsyncConnection[Any], people: Sequence[Caller]
) -> None:
    """Every caller's earlier call through every projection memstream runs."""
    projections = [build(name, settings) for name in PROJECTIONS]
    async with EventLog(settings, linger_ms=5) as log:
        await log.append_many([history(c) for c in people])
    async with running(settings, projections):
        # Twice over: a processor appends while the next one catches up.
        for _ in range(2):
            for projection in projections:
                await versions.wait_caught_up(settings, db, projection, 1, HISTORY_TIMEOUT_S)


# -- the live processor ------------------------------------------------------------------


@dataclass
class Processor:
    process: asyncio.subprocess.Process
    metrics_port: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the processor so far (/proc/PID/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def counters(self) -> dict[str, float]:
        """The processor's own counters: events folded (and skipped) by type, prefetches."""
        found: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        for line in text.splitlines():
            if line.startswith("memstream_live_events_total{"):
                labels, _, value = line.rpartition(" ")
                found[labels.split('type="', 1)[1].split('"', 1)[0]] = float(value)
            elif line.startswith("memstream_live_prefetches_total "):
                found["prefetches"] = float(line.rpartition(" ")[2])
        return found


@contextlib.asynccontextmanager
async def _processor(settings: Settings, scratch: Path) -> AsyncIterator[Processor]:
    """`python -m services.live` with these settings, its consumer group Stable with it
    as the only member; SIGTERM after."""
    port = closed_port()
    env = {
        **os.environ,
        **settings.to_env(),
        "MEMSTREAM_METRICS_PORT": str(port),
        "MEMSTREAM_LOG_LEVEL": "WARNING",
    }
    log_path = scratch / "live.log"
    with log_path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.live", env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"the processor exited: {_tail(log_path)}")
            with contextlib.suppress(Exception):
                if await group_state(settings, app_id(settings)) == ("Stable", 1):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the live processor's group is not stable: {_tail(log_path)}")
            await asyncio.sleep(0.5)
        yield Processor(process, port)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()
        if process.returncode:
            logger.warning("the processor exited with %d: %s", process.returncode, _tail(log_path))


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def _delete_processor_topics(settings: Settings) -> None:
    """The faust app's own topics (its table's changelog, its control topic...): the
    harness removes only memstream's."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.require_kafka(), **settings.kafka_options()
    )
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"{app_id(settings)}-")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


# -- the calls ----------------------------------------------------------------------------


def _turn(caller: Caller, call_id: str, started: datetime, k: int, line: Line) -> TurnSaid:
    return TurnSaid.create(
        tenant=TENANT,
        subject=caller.subject,
        source=Source(platform="vapi", event_id=f"{call_id}/{k}", agent_id=AGENT_ID),
        occurred_at=datetime.now(UTC),
        correlation_id=call_id,
        data={
            "conversation_id": call_id,
            "started_at": started,
            "turns": [{"role": line.role, "text": line.text, "offset_ms": k * 3000}],
        },
    )


async def _warm_up(log: EventLog, db: AsyncConnection[Any], people: Sequence[Caller]) -> None:
    """A few calls (not measured) until each has a prefetch: the processor reads the
    live topic from where these begin, its embedder and connections are warm, and this
    process has today's transcript key."""
    started = datetime.now(UTC)
    for caller in people:
        call_id = f"warm-{caller.index}"
        for k, line in enumerate(script(caller, 4)):
            await log.append(_turn(caller, call_id, started, k, line))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        cursor = await db.execute(
            "SELECT count(DISTINCT conversation_id) FROM live.prefetches"
            " WHERE conversation_id LIKE 'warm-%'"
        )
        row = await cursor.fetchone()
        if row and row[0] >= len(people):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the live processor prefetched nothing for the warm-up calls")
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class SentTurn:
    event_id: uuid.UUID
    call_id: str
    k: int
    opens: bool
    appending_at: float  # time.time() just before append


@dataclass(frozen=True)
class Phase:
    turns: dict[uuid.UUID, SentTurn]  # the caller's turns, by event id
    appended: int  # every turn, the agent's too
    turn_rate: float
    appends_ms: list[float]
    lateness_ms: list[float]
    generator_cpu_share: float
    processor_cpu_share: float
    processor_cpu_s: float  # from the first turn until the rows stopped growing


async def _live_phase(
    log: EventLog,
    db: AsyncConnection[Any],
    people: Sequence[Caller],
    turns: int,
    processor: Processor,
) -> Phase:
    scripts = [script(c, turns) for c in people]
    sent: dict[uuid.UUID, SentTurn] = {}
    appends_ms: list[float] = []
    lateness_ms: list[float] = []
    stamps: list[float] = []

    async def call(caller: Caller, lines: Sequence[Line], start: float) -> None:
        call_id = f"live-{caller.index}"
        started = datetime.now(UTC) + timedelta(seconds=start - time.perf_counter())
        for k, line in enumerate(lines):
            due = start + k * TURN_INTERVAL_S
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            lateness_ms.append(max(0.0, time.perf_counter() - due) * 1000)
            event = _turn(caller, call_id, started, k, line)
            wall, began = time.time(), time.perf_counter()
            await log.append(event)
            done = time.perf_counter()
            appends_ms.append((done - began) * 1000)
            stamps.append(done)
            if line.role == "user":
                sent[event.id] = SentTurn(event.id, call_id, k, line.opens, wall)

    n = len(people)
    logger.info("live phase: %d calls of %d turns, one every %g s", n, turns, TURN_INTERVAL_S)
    with input_outside_gc():
        cpu_began, own_began = processor.cpu_seconds(), time.process_time()
        began = time.perf_counter() + 0.5
        await asyncio.gather(
            *(
                call(caller, lines, began + TURN_INTERVAL_S * i / n)
                for i, (caller, lines) in enumerate(zip(people, scripts, strict=True))
            )
        )
        ended = time.perf_counter()
        cpu_phase, own = processor.cpu_seconds() - cpu_began, time.process_time() - own_began
    first = min(stamps)
    logger.info("live phase over; waiting for the prefetches to stop coming")
    await _until_settled(db)
    cpu_total = processor.cpu_seconds() - cpu_began
    return Phase(
        turns=sent,
        appended=len(stamps),
        turn_rate=(len(stamps) - 1) / (max(stamps) - first),
        appends_ms=appends_ms,
        lateness_ms=lateness_ms,
        generator_cpu_share=own / (ended - began),
        processor_cpu_share=cpu_phase / (ended - began),
        processor_cpu_s=cpu_total,
    )


async def _until_settled(db: AsyncConnection[Any]) -> None:
    """Until no prefetch row has come for SETTLED_AFTER_S."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, since = -1, time.monotonic()
    while time.monotonic() - since < SETTLED_AFTER_S:
        count = await _count(db, "live.prefetches")
        if count != last:
            last, since = count, time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"prefetches still coming {SETTLE_TIMEOUT_S:.0f} s after the phase")
        await asyncio.sleep(0.5)


@dataclass(frozen=True)
class Row:
    event_id: uuid.UUID
    conversation_id: str
    subject: str
    hits: list[dict[str, Any]]
    created_at: datetime


async def _prefetch_rows(db: AsyncConnection[Any]) -> list[Row]:
    cursor = await db.execute(
        "SELECT event_id, conversation_id, subject, hits, created_at FROM live.prefetches"
    )
    return [Row(*row) for row in await cursor.fetchall()]


def _match(rows: Sequence[Row], turns: dict[uuid.UUID, SentTurn]) -> dict[uuid.UUID, SentTurn]:
    """The caller's turn of each row that has one (by the row's event id: the prefetch's
    id is derived from its turn's)."""
    by_prefetch = {derived_event_id("context.prefetched", str(i)): t for i, t in turns.items()}
    return {row.event_id: by_prefetch[row.event_id] for row in rows if row.event_id in by_prefetch}


# -- the tool ------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z][A-Za-z']+")


def _questions(rows: Sequence[Row], count: int) -> list[tuple[str, str, str]]:
    """(call id, caller's number, question) for `count` tool calls: two words of a
    prefetched hit of a random call, so the call's prefetches cover the question."""
    rng = random.Random(7)
    usable = [r for r in rows if any(_words(h["text"]) for h in r.hits)]
    if not usable:
        raise RuntimeError("no prefetch has a hit with words to ask about")
    asked = []
    for _ in range(count):
        row = rng.choice(usable)
        words = rng.choice([w for h in row.hits if (w := _words(h["text"]))])
        chosen = rng.sample(words, min(2, len(words)))
        phone = row.subject.partition("/")[2]
        asked.append((row.conversation_id, phone, f"What do we know about {' and '.join(chosen)}?"))
    return asked


def _words(text: str) -> list[str]:
    return list(dict.fromkeys(w for w in _WORD.findall(text) if content_terms(w)))


def _prefetched_answers() -> float:
    value = REGISTRY.get_sample_value("memstream_tool_answers_total", {"source": "prefetched"})
    return value or 0.0


async def _tool_answers(
    settings: Settings, token: str, rows: Sequence[Row], requests: int
) -> tuple[list[float], int]:
    """Milliseconds of each measured tool request (all answered from the prefetches), and
    how many calls were asked about."""
    asked = _questions(rows, TOOL_WARMUP + requests)
    app = create_query_app(settings)
    headers = {"Authorization": f"Bearer {token}"}
    timed: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
            before = _prefetched_answers()
            with input_outside_gc():
                began = time.perf_counter()
                for i, (call_id, phone, question) in enumerate(asked):
                    await asyncio.sleep(max(0.0, began + i / TOOL_RATE - time.perf_counter()))
                    body = {
                        "message": {
                            "type": "tool-calls",
                            "call": {"id": call_id, "customer": {"number": phone}},
                            "toolCallList": [
                                {
                                    "id": f"tc-{i}",
                                    "name": "memory_search",
                                    "arguments": {"query": question},
                                }
                            ],
                        }
                    }
                    sent = time.perf_counter()
                    response = await client.post("/v1/tools/vapi", headers=headers, json=body)
                    elapsed = (time.perf_counter() - sent) * 1000
                    if response.status_code != 200 or not response.json()["results"][0].get(
                        "result"
                    ):
                        raise RuntimeError(
                            f"the tool answered {response.status_code}: {response.text}"
                        )
                    if i >= TOOL_WARMUP:
                        timed.append(elapsed)
            answered = _prefetched_answers() - before
    if answered != len(asked):
        raise RuntimeError(
            f"{len(asked) - answered:.0f} of {len(asked)} tool answers did not come from the"
            " call's prefetches"
        )
    return timed, len({call_id for call_id, _, _ in asked})
