"""The ingest service answering webhooks over HTTP, under an open-loop load.

The service runs as its own process (`memstream ingest`: one uvicorn process on uvloop,
with the httptools parser) against the
benchmark's topics and database; the load comes from another process
(`tests/benchmarks/loadgen.py`): 64 keep-alive HTTP/1.1 connections used round-robin,
every request built and signed before the clock starts, and sent at its scheduled time
whatever happened to the earlier ones. A latency runs from a request's *scheduled* send
time to the last byte of its response, so waiting for a free connection or behind a
slow answer counts (no coordinated omission). Only a 200 is a success; the service
answers it once the broker acknowledged the event (`acks=all`). The tenant and its
secrets are rows in the database, as `memstream tenants` / `memstream secrets` make them.

- **post-call, steady**: ElevenLabs `post_call_transcription` webhooks (the realistic
  body of tests/unit/ingest_payloads, 6.4 KB as sent, 10 turns of which 2 call tools,
  HMAC-signed; each a new `conversation_id`, so each appends one `conversation.ended`,
  from 10,000 callers, so the events spread over the partitions) at a steady 200
  requests/s for 30 s after 5 s of unmeasured warm-up.
- **post-call, highest sustained rate**: the same webhooks offered at 200, 400, 600,
  800, 1,000, 1,200, 1,500, 2,000... requests/s, 10 s a step after 1 s of unmeasured
  warm-up, until a step has a p99 of 100 ms or more, answers fewer than 95% of the
  offered rate, or any non-200 answer; the figure is the highest step that passed.
- **initiation**: the ElevenLabs conversation-initiation webhook (bearer token): the
  service appends `conversation.started` and answers the caller's briefing, read from
  the read models while the broker acknowledges (a query on conversations, one on
  memories). Seeded: 100,000 ended conversations (20,000 callers x 5, each with a
  title, a summary and 4 turns) and 100,000 memories (one per conversation, as
  `memory.extracted` events), projected by the real `ConversationsProjection` and
  `MemoriesProjection` before any clock starts (the runners are then stopped). 90% of
  the calls come from
  those callers (a briefing with their name, topics and summaries; the answers naming
  the caller are counted), 10% from unknown numbers, at 50 requests/s for 20 s after
  3 s of warm-up.

Each figure's conditions also say what the processes did: the CPU the service used
during the generator's run (warm-up included; /proc, 100% is one core), the generator's
own CPU and how late it sent a request at most, how many appends the broker
acknowledged in over 25 / 100 ms by the service's own `memstream_append_seconds`
histogram, and when (seconds into the measured window) the 20 slowest requests were
scheduled: a tail made of a few stalls shows as a few instants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from projections.memories import MemoriesProjection
from schemas import ConversationEnded, Event, MemoryExtracted, Source
from services import tenants
from services.ingest.signatures import sign_elevenlabs
from services.settings import Settings
from streams import versions
from streams.producer import EventLog
from streams.runtime import ProjectionRunner
from streams.topics import ensure_topics
from tests.benchmarks import loadgen
from tests.benchmarks.harness import BenchmarkContext, Figure, at_least, at_most, percentile
from tests.helpers import BASE_TIME, closed_port

logger = logging.getLogger(__name__)

PAYLOADS = Path(__file__).resolve().parents[1] / "unit" / "ingest_payloads"
TENANT = "bench"
POST_CALL_SECRET = "wsec_bench_elevenlabs_0123456789"
INITIATION_TOKEN = "init_bench_token_0123456789abcdef"
AGENT_ID = "agent_01jz8k3m4n5p6q7r8s9t0v1w2x"
CONNECTIONS = 64
POST_CALL_CALLERS = 10_000

STEADY_RATE = 200
STEADY_WARMUP_S = 5
STEADY_SECONDS = 30
STEADY_P99_TARGET_MS = 25.0

STEP_RATES = (200, 400, 600, 800, 1_000, 1_200, 1_500, 2_000, 2_500, 3_000)
STEP_WARMUP_S = 1
STEP_SECONDS = 10
STEP_P99_LIMIT_MS = 100.0
STEP_MIN_ACHIEVED = 0.95
SUSTAINED_TARGET = 800.0

SEED_CALLERS = 20_000
CONVERSATIONS_PER_CALLER = 5
SEED_TURNS = 4
SEED_CHUNK = 5_000
INITIATION_RATE = 50
INITIATION_WARMUP_S = 3
INITIATION_SECONDS = 20
KNOWN_SHARE = 0.9
INITIATION_P95_TARGET_MS = 10.0

READY_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 600.0
TITLES = (
    "Reschedule a cleaning",
    "Billing question",
    "New patient intake",
    "Insurance coverage",
    "Tooth pain, urgent visit",
    "Cancel an appointment",
    "Prescription refill",
)
MEMORIES = (
    "Allergic to penicillin",
    "Prefers morning appointments",
    "Has a cleaning booked for Thursday at 2 PM",
    "Nervous about the root canal",
    "Lives in Sacramento",
    "Usually drinks three cups of coffee every morning",
    "Insurance: Delta Dental PPO",
)
SECTORS = ("semantic", "procedural", "episodic", "emotional", "semantic")


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    await ensure_topics(settings)
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as conn:
        await tenants.create_tenant(conn, TENANT, "Bench", default_region="US")
        await tenants.add_webhook_secret(conn, TENANT, "elevenlabs", POST_CALL_SECRET)
        await tenants.add_webhook_secret(conn, TENANT, "elevenlabs-init", INITIATION_TOKEN)
    callers = ctx.scaled(SEED_CALLERS)
    seeding = await _seed_read_model(settings, callers)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        async with _ingest_service(settings, Path(scratch)) as service:
            steady = await _steady_post_calls(ctx, service)
            # The overload steps come last: what they leave behind cannot skew the others.
            initiation = await _initiations(ctx, service, callers, seeding)
            sustained = await _highest_sustained_rate(ctx, service)
    return [*steady, *sustained, *initiation]


# -- the service under test ------------------------------------------------------------


@dataclass
class Service:
    """The running ingest process, and where the load generator writes its input."""

    process: asyncio.subprocess.Process
    port: int
    scratch: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service process so far (/proc/PID/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def appends(self) -> dict[str, float]:
        """The service's own `memstream_append_seconds` histogram: appends by bucket bound."""
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        buckets: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("memstream_append_seconds_bucket{"):
                labels, _, count = line.rpartition(" ")
                bound = labels.split('le="', 1)[1].split('"', 1)[0]
                buckets[bound] = buckets.get(bound, 0.0) + float(count)
        return buckets


@contextlib.asynccontextmanager
async def _ingest_service(
    settings: Settings, scratch: Path, command: Sequence[str] = ("ingest", "--host", "127.0.0.1")
) -> AsyncIterator[Service]:
    """`memstream ingest` (or another ``command`` that serves ingest) on a free port, ready
    (GET /health/ready is 200); SIGTERM after."""
    port = closed_port()
    env = {
        **os.environ,
        **settings.to_env(),
        "MEMSTREAM_INGEST_PORT": str(port),
        # `memstream run` would also serve the query service: not measured here.
        "MEMSTREAM_QUERY_PORT": "0",
        "MEMSTREAM_METRICS_PORT": "0",
        "MEMSTREAM_LOG_LEVEL": "WARNING",
    }
    log_path = scratch / "ingest.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", *command,
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        await _until_ready(process, port, log_path)
        yield Service(process, port, scratch)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        if process.returncode:
            logger.warning("ingest exited with %d: %s", process.returncode, _tail(log_path))


async def _until_ready(process: asyncio.subprocess.Process, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"ingest exited with {process.returncode}: {_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health/ready")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ingest not ready within {READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.1)


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One load generator run: its measured requests and what the processes used."""

    rate: float
    results: dict[str, Any]
    service_cpu: float  # share of one core, over the generator's whole run
    appends: dict[str, float]  # appended during the run (warm-up included), by bucket bound

    @property
    def latencies_ms(self) -> list[float]:
        latencies: list[float] = self.results["latencies_ms"]
        return latencies

    @property
    def errors(self) -> int:
        return int(self.results["errors"])

    @property
    def achieved(self) -> float:
        return float(self.results["achieved_rps"])

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q) if self.latencies_ms else math.inf

    def params(self) -> dict[str, Any]:
        """Conditions every figure of a run reports."""
        results = self.results
        client_cpu = results["client_cpu_s"] / max(results["client_wall_s"], 1e-9)
        return {
            "rate_per_s": round(self.rate),
            "connections": CONNECTIONS,
            "requests": results["measured"],
            "errors": self.errors,
            **({"statuses": results["statuses"]} if self.errors else {}),
            "achieved_per_s": round(self.achieved, 1),
            "ingest_cpu": f"{self.service_cpu:.0%}",
            "loadgen_cpu": f"{client_cpu:.0%}",
            "loadgen_max_send_lag_ms": round(results["max_send_lag_ms"], 1),
            "appends": self.slow_appends(),
            # A tail made of stalls shows as a few instants; a saturated service does not.
            "slowest_20_scheduled_at_s": sorted({round(r["at_s"], 1) for r in results["slowest"]}),
        }

    def slow_appends(self) -> str:
        """How many appends the broker acknowledged slowly, as the service measured them."""
        total = self.appends.get("+Inf", 0.0)
        over = {bound: total - self.appends.get(bound, 0.0) for bound in ("0.025", "0.1")}
        return (
            f"{total:,.0f} (warm-up included), {over['0.025']:,.0f} over 25 ms, "
            f"{over['0.1']:,.0f} over 100 ms"
        )


async def _load(
    service: Service,
    requests: list[bytes],
    rate: float,
    warmup_s: float,
    duration_s: float,
    count_containing: str | None = None,
) -> Outcome:
    """Run the load generator over `requests` (built beforehand) as its own process."""
    path = service.scratch / "requests.bin"
    loadgen.write_requests(path, requests)
    spec = {
        "host": "127.0.0.1",
        "port": service.port,
        "requests": str(path),
        "rate": rate,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "connections": CONNECTIONS,
        "count_containing": count_containing,
    }
    generator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.benchmarks.loadgen",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    appends_before = await service.appends()
    cpu_before, began = service.cpu_seconds(), time.monotonic()
    stdout, _ = await generator.communicate(json.dumps(spec).encode())
    cpu_after, ended = service.cpu_seconds(), time.monotonic()
    appends = {k: v - appends_before.get(k, 0.0) for k, v in (await service.appends()).items()}
    path.unlink()
    if generator.returncode:
        raise RuntimeError(f"the load generator exited with {generator.returncode}")
    results: dict[str, Any] = json.loads(stdout)
    # The generator's own start-up (reading the file) is in the window: a slight underestimate.
    return Outcome(rate, results, (cpu_after - cpu_before) / (ended - began), appends)


def _count(rate: float, warmup_s: float, duration_s: float) -> int:
    return math.ceil((warmup_s + duration_s) * rate)


def _post_call_requests(count: int, run: str) -> list[bytes]:
    """Signed post-call webhooks, each a new conversation (one event appended per request)."""
    document: dict[str, Any] = orjson.loads(
        (PAYLOADS / "elevenlabs_post_call_transcription.json").read_bytes()
    )
    data = document["data"]
    variables = data["conversation_initiation_client_data"]["dynamic_variables"]
    signed_at = int(time.time())  # the service accepts signatures up to 30 minutes old
    requests: list[bytes] = []
    for i in range(count):
        data["conversation_id"] = variables["system__conversation_id"] = f"conv_{run}_{i:07d}"
        # Many callers, so the events spread over the partitions as real calls do.
        caller = f"+1415{5_580_000 + i % POST_CALL_CALLERS:07d}"
        data["metadata"]["phone_call"]["external_number"] = variables["system__caller_id"] = caller
        body = orjson.dumps(document)
        headers = {
            "Content-Type": "application/json",
            "ElevenLabs-Signature": sign_elevenlabs(POST_CALL_SECRET, body, signed_at),
        }
        requests.append(
            loadgen.http_request("POST", f"/v1/webhooks/{TENANT}/elevenlabs", headers, body)
        )
    return requests


# -- post-call webhooks ------------------------------------------------------------------


async def _steady_post_calls(ctx: BenchmarkContext, service: Service) -> list[Figure]:
    seconds = ctx.scaled(STEADY_SECONDS)
    requests = _post_call_requests(_count(STEADY_RATE, STEADY_WARMUP_S, seconds), "steady")
    body_bytes = len(requests[0].partition(b"\r\n\r\n")[2])
    outcome = await _load(service, requests, STEADY_RATE, STEADY_WARMUP_S, seconds)
    p50, p99 = outcome.p(50), outcome.p(99)
    logger.info("post-call at %d/s: p50 %.2f ms, p99 %.2f ms", STEADY_RATE, p50, p99)
    params = {
        **outcome.params(),
        "duration_s": seconds,
        "warmup_s": STEADY_WARMUP_S,
        "body_bytes": body_bytes,
        "timed": "scheduled send until the last byte of the response",
    }
    return [
        ctx.figure(f"post-call acknowledgement p50, steady {STEADY_RATE}/s", p50, "ms",
                   params=params),
        ctx.figure(f"post-call acknowledgement p99, steady {STEADY_RATE}/s", p99, "ms",
                   at_most(STEADY_P99_TARGET_MS), params=params),
    ]  # fmt: skip


async def _highest_sustained_rate(ctx: BenchmarkContext, service: Service) -> list[Figure]:
    seconds = ctx.scaled(STEP_SECONDS)
    steps: list[str] = []
    passed: Outcome | None = None
    stopped_by = f"no step failed up to {STEP_RATES[-1]}/s"
    for step, rate in enumerate(STEP_RATES):
        requests = _post_call_requests(_count(rate, STEP_WARMUP_S, seconds), f"step{step}")
        await asyncio.sleep(2)  # let the previous step's stragglers settle
        outcome = await _load(service, requests, rate, STEP_WARMUP_S, seconds)
        del requests
        p99 = outcome.p(99)
        steps.append(
            f"{rate}/s: p99 {p99:.1f} ms, {outcome.achieved:.0f}/s answered, "
            f"{outcome.errors} errors, ingest CPU {outcome.service_cpu:.0%}"
        )
        logger.info("post-call step %s", steps[-1])
        failures = [
            *([f"p99 {p99:.1f} ms >= {STEP_P99_LIMIT_MS:.0f} ms"] if p99 >= STEP_P99_LIMIT_MS
              else []),
            *([f"{outcome.achieved:.0f}/s answered < {STEP_MIN_ACHIEVED:.0%} of {rate}/s"]
              if outcome.achieved < STEP_MIN_ACHIEVED * rate else []),
            *([f"{outcome.errors} errors {outcome.results['statuses']}"] if outcome.errors
              else []),
        ]  # fmt: skip
        if failures:
            stopped_by = f"{rate}/s: " + "; ".join(failures)
            break
        passed = outcome
    value = passed.rate if passed is not None else 0.0
    params: dict[str, Any] = {
        **(passed.params() if passed is not None else {"connections": CONNECTIONS}),
        **({"p99_ms": round(passed.p(99), 1)} if passed is not None else {}),
        "step_s": seconds,
        "warmup_s": STEP_WARMUP_S,
        "steps": steps,
        "stopped_by": stopped_by,
        "pass": f"p99 < {STEP_P99_LIMIT_MS:.0f} ms, >= {STEP_MIN_ACHIEVED:.0%} of the offered "
        "rate answered, no error",
    }
    return [
        ctx.figure(
            f"highest sustained post-call rate with p99 under {STEP_P99_LIMIT_MS:.0f} ms",
            value, "requests/s", at_least(SUSTAINED_TARGET), params=params,
        )
    ]  # fmt: skip


# -- conversation initiation -------------------------------------------------------------


def _known_phone(caller: int) -> str:
    """The E.164 number of seeded caller `caller` (+14155550000...): valid numbers."""
    return f"+1415{5_550_000 + caller:07d}"


def _unknown_phone(index: int) -> str:
    """A valid number no seeded caller has (+14157000000...)."""
    return f"+1415{7_000_000 + index:07d}"


@dataclass(frozen=True)
class Seeding:
    conversations: int
    appended_s: float
    projected_s: float


def _seed_events(callers: range) -> Iterator[Event]:
    """Five ended conversations per caller, each with a title, a summary and turns."""
    for caller in callers:
        subject = f"{TENANT}/{_known_phone(caller)}"
        for k in range(CONVERSATIONS_PER_CALLER):
            conversation_id = f"conv_seed_{caller:06d}_{k}"
            started = BASE_TIME + timedelta(days=7 * k, seconds=caller)
            ended = started + timedelta(minutes=4)
            title = TITLES[(caller + k) % len(TITLES)]
            yield ConversationEnded.create(
                tenant=TENANT,
                subject=subject,
                source=Source(platform="elevenlabs", event_id=conversation_id, agent_id=AGENT_ID),
                occurred_at=ended,
                data={
                    "conversation_id": conversation_id,
                    "started_at": started,
                    "ended_at": ended,
                    "duration_secs": 240.0,
                    "status": "done",
                    "turns": [
                        {
                            "role": "agent" if t % 2 == 0 else "user",
                            "text": f"turn {t} of conversation {k} with caller {caller}",
                            "offset_ms": t * 4_000,
                        }
                        for t in range(SEED_TURNS)
                    ],
                    "analysis": {
                        "title": title,
                        "summary": (
                            f"Caller {caller} phoned about: {title.lower()}. The agent "
                            f"checked the account, answered the questions and agreed on "
                            f"next steps; follow-up number {k + 1} for this caller."
                        ),
                        "successful": True,
                    },
                    "dynamic_variables": {"user_name": f"Caller {caller}"},
                },
            )
            # And what extraction would have found in it: one memory per conversation.
            memory_id = uuid.uuid5(uuid.NAMESPACE_URL, conversation_id)
            yield MemoryExtracted.create(
                id=memory_id,
                tenant=TENANT,
                subject=subject,
                source=Source(platform="memstream", event_id=conversation_id),
                occurred_at=started,
                data={
                    "memory_id": memory_id,
                    "content": MEMORIES[(caller + k) % len(MEMORIES)],
                    "sector": SECTORS[k % len(SECTORS)],
                    "salience": round(0.3 + 0.1 * ((caller + k) % 7), 2),
                    "kind": "fact",
                    "observed_at": started,
                    "extractor": "rules",
                    "extractor_version": "1",
                    "provenance": {"conversation_id": conversation_id, "turns": [1]},
                },
            )


async def _seed_read_model(settings: Settings, callers: int) -> Seeding:
    """Append the callers' ended conversations and project them; stop the runner after."""
    conversations = callers * CONVERSATIONS_PER_CALLER
    began = time.perf_counter()
    per_chunk = SEED_CHUNK // CONVERSATIONS_PER_CALLER
    async with EventLog(settings, linger_ms=5) as log:
        for first in range(0, callers, per_chunk):
            await log.append_many(list(_seed_events(range(first, min(callers, first + per_chunk)))))
    appended = time.perf_counter()

    projections = [ConversationsProjection(), MemoriesProjection()]
    runners = [ProjectionRunner(projection, settings) for projection in projections]
    for runner in runners:
        await runner.start()
    tasks = [asyncio.create_task(runner.run()) for runner in runners]
    try:
        async with await AsyncConnection.connect(
            settings.require_database(), autocommit=True
        ) as conn:
            for projection in projections:
                await versions.wait_caught_up(settings, conn, projection, 1, CATCH_UP_TIMEOUT_S)
            projected = time.perf_counter()
            cursor = await conn.execute(
                "SELECT (SELECT count(*) FROM conversations.conversations),"
                " (SELECT count(*) FROM conversations.users),"
                " (SELECT count(*) FROM memories.memories WHERE state = 'active')"
            )
            rows = await cursor.fetchone()
    finally:
        for runner in runners:
            runner.stop()
        await asyncio.gather(*tasks)
    if rows is None or tuple(rows) != (conversations, callers, conversations):
        raise RuntimeError(
            f"seeding: {rows} rows, expected ({conversations}, {callers}, {conversations})"
        )
    logger.info(
        "seeded %d conversations and as many memories: appended in %.1f s, projected in %.1f s",
        conversations, appended - began, projected - appended,
    )  # fmt: skip
    return Seeding(conversations, appended - began, projected - appended)


def _initiation_requests(count: int, callers: int, measured_from: int) -> tuple[list[bytes], int]:
    """Initiation webhooks, 90% from seeded callers; also how many measured ones are known."""
    rng = random.Random(20_260_302)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {INITIATION_TOKEN}"}
    requests: list[bytes] = []
    known_measured = 0
    for i in range(count):
        known = rng.random() < KNOWN_SHARE
        caller = _known_phone(rng.randrange(callers)) if known else _unknown_phone(i)
        if known and i >= measured_from:
            known_measured += 1
        body = orjson.dumps(
            {
                "caller_id": caller,
                "agent_id": AGENT_ID,
                "called_number": "+14155550100",
                "call_sid": f"CAbench{i:026d}",
            }
        )
        path = f"/v1/webhooks/{TENANT}/elevenlabs/initiation"
        requests.append(loadgen.http_request("POST", path, headers, body))
    return requests, known_measured


async def _initiations(
    ctx: BenchmarkContext, service: Service, callers: int, seeding: Seeding
) -> list[Figure]:
    seconds = ctx.scaled(INITIATION_SECONDS)
    count = _count(INITIATION_RATE, INITIATION_WARMUP_S, seconds)
    measured_from = math.ceil(INITIATION_WARMUP_S * INITIATION_RATE)
    requests, known = _initiation_requests(count, callers, measured_from)
    # A known caller's briefing names them: `"user_name":"Caller 123"` in the reply.
    outcome = await _load(
        service, requests, INITIATION_RATE, INITIATION_WARMUP_S, seconds,
        count_containing='"user_name":"Caller ',
    )  # fmt: skip
    briefed = int(outcome.results["containing"])
    if briefed != known:
        # An empty briefing is what the service answers when the read is slow or fails.
        logger.warning("%d of %d known callers got their briefing", briefed, known)
    p50, p95 = outcome.p(50), outcome.p(95)
    logger.info("initiation at %d/s: p50 %.2f ms, p95 %.2f ms", INITIATION_RATE, p50, p95)
    params = {
        **outcome.params(),
        "duration_s": seconds,
        "warmup_s": INITIATION_WARMUP_S,
        "read_model": f"{seeding.conversations:,} ended conversations and as many memories"
        f" of {callers:,} callers "
        f"(appended in {seeding.appended_s:.0f} s, projected in {seeding.projected_s:.0f} s)",
        "known_callers": f"{known} of {outcome.results['measured']} requests",
        "briefings_naming_the_caller": briefed,
        "timed": "scheduled send until the last byte of the briefing",
    }
    read_model = f"{seeding.conversations:,} memories and as many conversations in the read models"
    return [
        ctx.figure(f"initiation latency p50, {read_model}", p50, "ms", params=params),
        ctx.figure(f"initiation latency p95, {read_model}", p95, "ms",
                   at_most(INITIATION_P95_TARGET_MS), params=params),
    ]  # fmt: skip
