"""The remote providers end to end on the real broker and database, the OpenAI API played
by the fake server (a real HTTP server; the real ``openai`` client talks to it):
LLM extraction recorded as such, the breaker's fallback to the rules and its recovery, no
PII in any request, no duplicates on redelivery, reprocessing or a crash between append
and commit, rebuilds without a single model call, and OpenAI embeddings with their
fallback to the local model."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from projections.embeddings.local import MODEL_NAME as LOCAL_MODEL
from projections.embeddings.processor import EmbeddingProcessor
from projections.embeddings.projection import EmbeddingsProjection
from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection, list_memories
from projections.providers.redaction import redact
from projections.providers.resilience import CircuitBreaker, Resilient
from schemas import EmbeddingComputed, MemoryExtracted, MemorySuperseded, decode_event
from services.settings import Settings
from streams import EventLog, ProjectionRunner
from streams.runtime import AFTER_APPLY
from streams.topics import EMBEDDINGS, Topics
from tests.fakes.openai_server import CHAT, FakeOpenAI, fake_vector
from tests.fakes.openai_server import EMBEDDINGS as EMBEDDINGS_PATH
from tests.helpers import eventually, read_topic, scalar
from tests.integration.projection_contract import project, snapshot
from tests.integration.test_embeddings import memory
from tests.integration.test_extraction_processor import SUBJECT, TENANT, call, memory_events

LLM = "fake-model"
EMBEDDING_MODEL = "fake-embed"
API_KEY = "sk-test-not-a-real-key"

DENVER = call(
    "conv-a",
    0,
    ("agent", "Bayview Dental, how can I help?"),
    (
        "user",
        "Hi, I live in Denver and I'm allergic to penicillin. My cell is (415) 555-0132"
        " and my email is dana.k@example.com.",
    ),
    ("agent", "Thanks, I've noted that. Which card for the deposit?"),
    ("user", "The Visa, 4111 1111 1111 1111."),
)
BOULDER = call(
    "conv-b",
    30,
    ("agent", "Bayview Dental, how can I help?"),
    ("user", "I just moved to Boulder. Oh, and I'm allergic to latex too."),
    ("agent", "Got it, I've updated your file."),
)
SECRETS = ["555-0132", "415", "dana.k", "example.com", "4111"]


def said(content: str, sector: str, kind: str, salience: float, key: str | None) -> dict[str, Any]:
    return {
        "content": content,
        "sector": sector,
        "kind": kind,
        "salience": salience,
        "key": key,
        "turns": [1],
    }


DENVER_ANSWER = {
    "memories": [
        said("Lives in Denver", "semantic", "fact", 0.7, "home_city"),
        said("Allergic to penicillin", "semantic", "fact", 0.9, None),
    ]
}
BOULDER_ANSWER = {
    "memories": [
        said("Lives in Boulder", "semantic", "fact", 0.7, "home_city"),
        said("Allergic to latex", "semantic", "fact", 0.9, None),
    ]
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(dimension=16, slow_s=2.0) as server:
        server.answer("Denver", DENVER_ANSWER)
        server.answer("Boulder", BOULDER_ANSWER)
        yield server


def with_provider(settings: Settings, fake: FakeOpenAI, **changes: Any) -> Settings:
    return settings.replace(
        **{
            "openai_base_url": fake.base_url,
            "openai_api_key": API_KEY,
            "llm_model": LLM,
            "embedding_model": EMBEDDING_MODEL,
            "provider_timeout_s": 1.0,
            "provider_retries": 1,
            **changes,
        }
    )


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def on_a_manual_clock(calls: Resilient) -> ManualClock:
    """Give `calls` a breaker configured like its own, on a clock the test moves: a reset
    time passes without waiting for it."""
    clock = ManualClock()
    was = calls.breaker
    calls.breaker = CircuitBreaker(
        was.provider, was.operation, failures=was.failures, reset_s=was.reset_s, clock=clock
    )
    return clock


def assert_no_pii_sent(fake: FakeOpenAI) -> None:
    assert fake.requests, "the provider was never called"
    for request in fake.requests:
        for secret in SECRETS:
            assert secret not in request.raw, (secret, request.raw[:500])


async def extracted(settings: Settings) -> list[MemoryExtracted]:
    return [e for e in await memory_events(settings) if isinstance(e, MemoryExtracted)]


async def embeddings(settings: Settings) -> list[EmbeddingComputed]:
    topic = Topics(settings.topic_prefix).name(EMBEDDINGS)
    events = [decode_event(r.value) for r in await read_topic(settings, topic)]
    return [e for e in events if isinstance(e, EmbeddingComputed)]


# ----------------------------------------------------------------- extraction


async def test_the_llm_path_records_its_memories_as_llm_and_sends_no_pii(
    topics: Settings, db: Any, fake: FakeOpenAI
) -> None:
    settings = with_provider(topics, fake)
    async with EventLog(settings) as log:
        await log.append_many([DENVER, BOULDER])
    await project(settings, ExtractionProcessor.from_settings(settings))
    await project(settings, MemoriesProjection())

    events = await memory_events(settings)
    made = [e for e in events if isinstance(e, MemoryExtracted)]
    assert {str(e.data.content) for e in made} == {
        "Lives in Denver",
        "Allergic to penicillin",
        "Lives in Boulder",
        "Allergic to latex",
    }
    assert {(e.data.extractor, e.data.extractor_version) for e in made} == {(f"llm:{LLM}", "1")}
    [superseded] = [e for e in events if isinstance(e, MemorySuperseded)]
    by_id = {e.data.memory_id: str(e.data.content) for e in made}
    assert by_id[superseded.data.memory_id] == "Lives in Denver"
    assert by_id[superseded.data.superseded_by] == "Lives in Boulder"

    active = {m["content"]: m for m in await list_memories(db, TENANT, SUBJECT)}
    assert set(active) == {"Allergic to penicillin", "Lives in Boulder", "Allergic to latex"}
    assert {m["extractor"] for m in active.values()} == {f"llm:{LLM}"}
    assert fake.calls(CHAT) == 2
    assert_no_pii_sent(fake)
    # The answer journal only holds answers while their batch is in flight.
    assert await scalar(db, "SELECT count(*) FROM extraction_v1.answers") == 0


async def test_the_breaker_falls_back_to_the_rules_and_recovers_to_the_llm(
    topics: Settings, db: Any, fake: FakeOpenAI
) -> None:
    settings = with_provider(
        topics, fake, provider_retries=0, breaker_failures=1, breaker_reset_s=1.0
    )
    processor = ExtractionProcessor.from_settings(settings)
    clock = on_a_manual_clock(processor.extractor.calls)  # type: ignore[attr-defined]
    fake.fail("500", path=CHAT)
    async with EventLog(settings) as log:
        await log.append(DENVER)
    await project(settings, processor)
    during = await extracted(settings)
    assert during and {e.data.extractor for e in during} == {"rules"}
    assert fake.calls(CHAT) == 1
    assert processor.extractor.calls.breaker.state == "open"  # type: ignore[attr-defined]

    fake.recover()
    clock.now += 1.0  # the breaker's reset time: the next call is a trial
    async with EventLog(settings) as log:
        await log.append(BOULDER)
    await project(settings, processor)
    await project(settings, MemoriesProjection())
    after = [e for e in await extracted(settings) if e.causation_id == BOULDER.id]
    assert {str(e.data.content) for e in after} == {"Lives in Boulder", "Allergic to latex"}
    assert {e.data.extractor for e in after} == {f"llm:{LLM}"}
    assert processor.extractor.calls.breaker.state == "closed"  # type: ignore[attr-defined]

    # Each memory says which path made it, in the read model too.
    paths = {m["content"]: m["extractor"] for m in await list_memories(db, TENANT, SUBJECT)}
    assert paths["Allergic to penicillin"] == "rules"
    assert paths["Allergic to latex"] == f"llm:{LLM}"
    assert_no_pii_sent(fake)


async def test_redelivery_and_reprocessing_create_no_duplicates(
    topics: Settings, db: Any, fake: FakeOpenAI
) -> None:
    settings = with_provider(topics, fake)
    async with EventLog(settings) as log:
        await log.append_many([DENVER, DENVER, BOULDER])  # a redelivered webhook
    await project(settings, ExtractionProcessor.from_settings(settings))
    await project(settings, MemoriesProjection())
    first = await memory_events(settings)
    assert len({e.id for e in first}) == len(first) == 5  # 4 extracted, 1 superseded
    assert fake.calls(CHAT) == 2  # the redelivered conversation was not asked about
    rows = await snapshot(db, "memories_v1", MemoriesProjection.tables)

    # Extraction v2 from offset 0 asks the model again; the same answers give the same ids.
    await project(settings, ExtractionProcessor.from_settings(settings), version=2)
    await project(settings, MemoriesProjection())
    again = await memory_events(settings)
    assert sorted({e.id for e in again}) == sorted(e.id for e in first)
    assert await snapshot(db, "memories_v1", MemoriesProjection.tables) == rows


class Crash(Exception):
    """Stands for the process dying between the append and the commit."""


async def test_a_crash_between_append_and_commit_replays_the_journaled_answer(
    topics: Settings, db: Any, fake: FakeOpenAI
) -> None:
    settings = with_provider(topics, fake)
    async with EventLog(settings) as log:
        await log.append(DENVER)

    def crash(step: str) -> None:
        if step == AFTER_APPLY:  # the memory events are appended, nothing is committed
            raise Crash(step)

    runner = ProjectionRunner(ExtractionProcessor.from_settings(settings), settings, fault=crash)
    with pytest.raises(Crash):
        await runner.run()
    appended = await memory_events(settings)
    assert {str(e.data.content) for e in appended if isinstance(e, MemoryExtracted)} == {
        "Lives in Denver",
        "Allergic to penicillin",
    }
    assert await scalar(db, "SELECT count(*) FROM extraction_v1.answers") == 1

    # The model changes its mind before the replay: without the journal the replay would
    # append memories with other ids next to the ones already in the log.
    fake.answer("Denver", {"memories": [said("Lives in Aurora", "semantic", "fact", 0.7, None)]})
    await project(settings, ExtractionProcessor.from_settings(settings))
    await project(settings, MemoriesProjection())
    replayed = await memory_events(settings)
    assert {e.id for e in replayed} == {e.id for e in appended}
    # Asked again (a rebalance may even have it prepare the batch twice); the journaled
    # answer was kept.
    assert fake.calls(CHAT) >= 2
    contents = {m["content"] for m in await list_memories(db, TENANT, SUBJECT)}
    assert contents == {"Lives in Denver", "Allergic to penicillin"}
    assert await scalar(db, "SELECT count(*) FROM extraction_v1.answers") == 0


# ----------------------------------------------------------------- embeddings


async def test_openai_embeddings_are_batched_redacted_normalised_and_fall_back_to_local(
    topics: Settings, db: Any, fake: FakeOpenAI
) -> None:
    settings = with_provider(topics, fake, provider_retries=0, breaker_failures=1)
    processor = EmbeddingProcessor.from_settings(settings)
    remote = [memory("Phone number: (415) 555-0132"), memory("Allergic to penicillin")]
    async with EventLog(settings) as log:
        await log.append_many(remote)
    await project(settings, processor)
    computed = await embeddings(settings)
    assert {e.data.memory_id for e in computed} == {m.data.memory_id for m in remote}
    assert {(e.data.model, e.data.dimension) for e in computed} == {
        (f"openai/{EMBEDDING_MODEL}", 16)
    }
    for event in computed:
        [source] = [m for m in remote if m.data.memory_id == event.data.memory_id]
        expected = np.asarray(fake_vector(redact(str(source.data.content)), 16))
        expected /= np.linalg.norm(expected)  # the fake's vectors are not unit length
        # Recorded as float32 (what pgvector stores): within float32's rounding.
        assert np.allclose(event.data.vector, expected, rtol=1e-7, atol=1e-9)
    assert fake.calls(EMBEDDINGS_PATH) == 1  # one request for the batch
    assert_no_pii_sent(fake)

    # The provider fails: the batch is embedded locally and labelled with the local model.
    fake.fail("500", path=EMBEDDINGS_PATH)
    local = [memory("Prefers morning appointments", minutes=1)]
    async with EventLog(settings) as log:
        await log.append_many(local)
    await project(settings, processor)
    later = [e for e in await embeddings(settings) if e.data.memory_id == local[0].data.memory_id]
    assert [(e.data.model, e.data.dimension) for e in later] == [(LOCAL_MODEL, 384)]

    await project(settings, EmbeddingsProjection())
    models = await db.execute(
        "SELECT model, count(*) FROM embeddings.embeddings GROUP BY model ORDER BY model"
    )
    assert await models.fetchall() == [(LOCAL_MODEL, 1), (f"openai/{EMBEDDING_MODEL}", 2)]


async def test_rebuilding_the_read_models_from_the_log_calls_no_model(
    topics: Settings, db: Any, fake: FakeOpenAI
) -> None:
    settings = with_provider(topics, fake)
    async with EventLog(settings) as log:
        await log.append_many([DENVER, BOULDER])
    await project(settings, ExtractionProcessor.from_settings(settings))
    await project(settings, EmbeddingProcessor.from_settings(settings))
    await project(settings, MemoriesProjection())
    await project(settings, EmbeddingsProjection())
    assert fake.calls(CHAT) == 2 and fake.calls(EMBEDDINGS_PATH) >= 1
    memories_v1 = await snapshot(db, "memories_v1", MemoriesProjection.tables)
    embeddings_v1 = await snapshot(db, "embeddings_v1", EmbeddingsProjection.tables)
    assert memories_v1["memories"] and embeddings_v1["embeddings"]

    fake.clear_log()
    fake.fail("500")  # a rebuild that called the model would also be visible as fallbacks
    await project(settings, MemoriesProjection(), version=2)
    await project(settings, EmbeddingsProjection(), version=2)
    assert fake.requests == []
    assert await snapshot(db, "memories_v2", MemoriesProjection.tables) == memories_v1
    assert await snapshot(db, "embeddings_v2", EmbeddingsProjection.tables) == embeddings_v1


# ------------------------------------------------------------------ the command


async def test_memstream_projections_run_builds_the_extractor_from_the_environment(
    topics: Settings, fake: FakeOpenAI
) -> None:
    # A cold process on a loaded machine can take over the other tests' 1 s to read an
    # answer: a longer timeout, and a retry (correct behaviour) is allowed.
    settings = with_provider(topics, fake, provider_timeout_s=10.0)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "projections", "run", "extraction"],
        env={**os.environ, **settings.to_env(), "MEMSTREAM_METRICS_PORT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with EventLog(settings) as log:
            await log.append(DENVER)
        made = await eventually(lambda: extracted(settings), lambda e: len(e) == 2, timeout=90)
        assert {e.data.extractor for e in made} == {f"llm:{LLM}"}
        # Asked once, or again by the provider's retry if an answer took over 10 s; the
        # memories above are the one call's either way (two, not four).
        assert 1 <= fake.calls(CHAT) <= 1 + settings.provider_retries
        assert_no_pii_sent(fake)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
    # The key reached the child through its environment, and no log line of it.
    assert API_KEY not in stderr.decode()
