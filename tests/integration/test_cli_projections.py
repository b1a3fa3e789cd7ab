"""`memstream projections` and `memstream reprocess` as an operator runs them: real
processes against the real broker and database, the live version serving throughout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from projections import PROJECTIONS
from projections.conversations import ConversationsProjection
from projections.extraction.processor import ExtractionProcessor
from projections.lifecycle import downstream
from projections.memories import MemoriesProjection
from services.settings import Settings
from streams import EventLog, versions
from streams.runtime import ProjectionRunner
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import call_events, closed_port, eventually, scalar
from tests.integration.test_providers import BOULDER, DENVER, fake, with_provider  # noqa: F401

# The exit codes services/cli/common.py documents.
OK, USAGE, UNAVAILABLE, NOT_FOUND, INCOMPLETE = 0, 2, 3, 4, 5


def cli(settings: Settings, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def acli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`cli` off the event loop, so the test can query while the command runs."""
    return await asyncio.to_thread(cli, settings, *args)


async def project_v1(settings: Settings, projection: Any) -> None:
    """Run version 1 of a projection in this process until it has the whole log."""
    runner = ProjectionRunner(projection, settings)
    task = asyncio.create_task(runner.run())
    try:
        async with await AsyncConnection.connect(settings.require_database()) as conn:
            await versions.wait_caught_up(settings, conn, projection, 1, timeout=120)
    finally:
        runner.stop()
        await task


async def view_source(db: Any, view: str) -> str:
    return str(await scalar(db, "SELECT pg_get_viewdef(%s::regclass)", view))


async def test_rebuild_builds_beside_the_live_version_and_switches_atomically(
    topics: Settings, db: Any
) -> None:
    async with EventLog(topics) as log:
        await log.append_many(call_events("acme", 40))
    await project_v1(topics, ConversationsProjection())
    total = await scalar(db, "SELECT count(*) FROM conversations.conversations")
    assert total == 40
    assert "conversations_v1" in await view_source(db, "conversations.conversations")

    # Readers keep asking while the rebuild runs: every answer is v1's whole table or
    # v2's whole table, never a partial one and never an error.
    seen: list[int] = []
    done = asyncio.Event()

    async def read_all_the_time() -> None:
        async with await AsyncConnection.connect(topics.require_database(), autocommit=True) as c:
            while not done.is_set():
                seen.append(await scalar(c, "SELECT count(*) FROM conversations.conversations"))
                await asyncio.sleep(0.005)

    reader = asyncio.create_task(read_all_the_time())
    try:
        result = await acli(topics, "projections", "rebuild", "conversations", "--swap", "--json")
    finally:
        done.set()
        await reader
    assert result.returncode == OK, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["caught_up"] and outcome["switched"]
    assert outcome["versions"][0]["projection"] == "conversations"
    assert outcome["versions"][0]["version"] == 2
    assert outcome["versions"][0]["events"] == 80, result.stderr  # 40 calls, 2 events each
    assert seen and set(seen) == {40}
    assert "conversations_v2" in await view_source(db, "conversations.conversations")
    assert await versions.live_version(db, "conversations") == 2
    states = {i.version: i.state for i in await versions.registry(db, "conversations")}
    assert states == {1: "retired", 2: "live"}
    # Both versions hold the same rows: the rebuild reproduced the read model.
    for table in ConversationsProjection.tables:
        old = await scalar(db, f"SELECT count(*) FROM conversations_v1.{table}")
        new = await scalar(db, f"SELECT count(*) FROM conversations_v2.{table}")
        assert old == new, table

    dropped = await acli(topics, "projections", "drop", "conversations", "1", "--json")
    assert dropped.returncode == OK, dropped.stderr
    assert await scalar(
        db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'conversations_v1'"
    ) == 0  # fmt: skip
    assert await scalar(db, "SELECT count(*) FROM conversations.conversations") == 40


async def test_rebuild_since_a_time_starts_at_the_first_offset_at_or_after_it(
    topics: Settings, db: Any
) -> None:
    early, late = call_events("acme", 6), call_events("beta", 5)
    async with EventLog(topics) as log:
        await log.append_many(early)
        await asyncio.sleep(1.5)  # record timestamps are append times
        since = datetime.now(UTC)
        await asyncio.sleep(0.5)
        await log.append_many(late)
    await project_v1(topics, ConversationsProjection())

    result = await acli(
        topics, "projections", "rebuild", "conversations", "--since", since.isoformat(), "--json"
    )
    assert result.returncode == OK, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["caught_up"] and not outcome["switched"]
    assert outcome["versions"][0]["events"] == len(late)
    # v2 began, per partition, at the first late event there (the end where there is
    # none): it projected exactly the late events and is now at the end everywhere.
    for position in await versions.positions(topics, db, ConversationsProjection, 2):
        assert position.checkpoint == position.log_end
    tenants = {
        row[0]
        for row in await (
            await db.execute("SELECT DISTINCT tenant FROM conversations_v2.conversations")
        ).fetchall()
    }
    assert tenants == {"beta"}
    assert await scalar(db, "SELECT count(*) FROM conversations_v2.conversations") == 5
    assert await versions.live_version(db, "conversations") == 1  # not switched
    info = {i.version: i for i in await versions.registry(db, "conversations")}
    assert info[2].state == "building" and info[2].start_at == since
    # Swapping a caught-up version makes it live.
    swapped = await acli(topics, "projections", "swap", "conversations", "2", "--json")
    assert swapped.returncode == OK, swapped.stderr
    assert await versions.live_version(db, "conversations") == 2


async def rows(db: Any, query: str) -> list[tuple[Any, ...]]:
    return list(await (await db.execute(query)).fetchall())


async def test_reprocess_extraction_builds_a_new_lineage_side_by_side_then_switches(
    topics: Settings,
    db: Any,
    fake: FakeOpenAI,  # noqa: F811
) -> None:
    async with EventLog(topics) as log:
        await log.append_many([DENVER, BOULDER])
    # Months of rules: extraction v1 and the memories read model v1 are live.
    await project_v1(topics, ExtractionProcessor())
    await project_v1(topics, MemoriesProjection())
    by_rules = await rows(db, "SELECT content, extractor FROM memories_v1.memories ORDER BY 1")
    assert by_rules and {e for _, e in by_rules} == {"rules"}

    # The provider is configured, but the environment still says "rules" (no LLM model):
    # the command line chooses the extractor, and the new versions record it.
    provider = with_provider(topics, fake, llm_model="", embedding_model="")
    result = await acli(
        provider, "reprocess", "extraction", "--extractor", "llm:fake-model", "--json"
    )
    assert result.returncode == OK, result.stderr
    outcome = json.loads(result.stdout)
    built = {(v["projection"], v["version"]) for v in outcome["versions"]}
    assert built == {
        ("extraction", 2), ("memories", 2), ("embedder", 1), ("embeddings", 1),
        ("summarizer", 1), ("summaries", 1),
    }  # fmt: skip
    assert outcome["caught_up"] and not outcome["switched"]
    assert {c["table"] for c in outcome["compare"] if c["projection"] == "memories"} == set(
        MemoriesProjection.tables
    )

    # Side by side: v1 still holds exactly the rules' memories, v2 exactly the model's.
    assert await rows(db, "SELECT content, extractor FROM memories_v1.memories ORDER BY 1") == (
        by_rules
    )
    by_llm = await rows(db, "SELECT content, extractor, state FROM memories_v2.memories ORDER BY 1")
    assert by_llm == [
        ("Allergic to latex", "llm:fake-model", "active"),
        ("Allergic to penicillin", "llm:fake-model", "active"),
        ("Lives in Boulder", "llm:fake-model", "active"),
        ("Lives in Denver", "llm:fake-model", "superseded"),
    ]
    # The readers of the new lineage saw only it: every vector is of a v2 memory.
    assert not any(i.last_error for i in await versions.registry(db)), await versions.registry(db)
    embedded = {r[0] for r in await rows(db, "SELECT memory_id FROM embeddings_v1.embeddings")}
    assert embedded == {r[0] for r in await rows(db, "SELECT memory_id FROM memories_v2.memories")}
    assert await versions.live_version(db, "memories") == 1
    assert (await versions.config(db, "extraction", 2))["settings"] == {"llm_model": "fake-model"}

    # The switch: all of the new versions at once.
    for name, version in sorted(built):
        if version > 1:
            swapped = await acli(provider, "projections", "swap", name, str(version), "--json")
            assert swapped.returncode == OK, swapped.stderr
    assert await rows(db, "SELECT content FROM memories.memories ORDER BY 1") == [
        (content,) for content, _, _ in by_llm
    ]
    assert await versions.live_version(db, "extraction") == 2


def test_reprocess_covers_every_reader_of_a_processor_in_dependency_order() -> None:
    assert downstream("extraction") == [
        "memories", "embedder", "summarizer", "embeddings", "summaries"
    ]  # fmt: skip
    assert downstream("embedder") == ["embeddings"]
    assert set(downstream("extraction")) | {"extraction", "conversations", "audit"} == set(
        PROJECTIONS
    )


async def test_memstream_run_follows_a_switch_to_the_rebuilt_version(
    topics: Settings, db: Any
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run"],
        env={
            **os.environ,
            **topics.to_env(),
            "MEMSTREAM_METRICS_PORT": "0",
            "MEMSTREAM_INGEST_PORT": str(closed_port()),
            "MEMSTREAM_QUERY_PORT": str(closed_port()),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with EventLog(topics) as log:
            await log.append_many(call_events("acme", 4))

            async def count() -> Any:
                try:
                    return await scalar(db, "SELECT count(*) FROM conversations.conversations")
                except Exception:  # the views appear when the runner registers
                    return None

            await eventually(count, lambda n: n == 4, timeout=120)
            result = await acli(topics, "projections", "rebuild", "conversations", "--swap")
            assert result.returncode == OK, result.stderr
            assert "switched live: conversations v2" in result.stdout
            # Written after the switch: only a worker running v2 can project it now.
            await log.append_many(call_events("beta", 3))
            await eventually(count, lambda n: n == 7, timeout=60)
        status = await acli(topics, "projections", "status", "conversations", "--json")
        assert status.returncode == OK, status.stderr
        [entry] = json.loads(status.stdout)["projections"]
        assert entry["live_version"] == 2
        v2 = next(v for v in entry["versions"] if v["version"] == 2)
        assert v2["lag"] == 0 and v2["state"] == "live"
        assert sum(p["log_end"] for p in v2["partitions"]) == 14
        assert all(p["checkpoint"] == p["log_end"] for p in v2["partitions"])
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=90)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "no longer v1; switching" in stderr.decode()


async def test_status_shows_versions_lag_and_the_last_error(topics: Settings, db: Any) -> None:
    async with EventLog(topics) as log:
        await log.append_many(call_events("acme", 3))
    await project_v1(topics, ConversationsProjection())
    async with EventLog(topics) as log:
        await log.append_many(call_events("beta", 2))  # 4 events v1 has not seen
    await db.execute(
        "UPDATE memstream.projection_versions SET last_error = 'boom', last_error_at = now()"
        " WHERE projection = 'conversations'"
    )
    result = await acli(topics, "projections", "status", "--json", "--interval", "0.2")
    assert result.returncode == OK, result.stderr
    report = {p["name"]: p for p in json.loads(result.stdout)["projections"]}
    assert set(report) == set(PROJECTIONS)
    [v1] = report["conversations"]["versions"]
    assert (v1["version"], v1["state"], v1["lag"], v1["last_error"]) == (1, "live", 4, "boom")
    assert v1["events_per_s"] == 0  # nothing runs it
    assert report["memories"]["versions"] == []
    # The live processor: no worker has committed on the (empty) live topic.
    live = json.loads(result.stdout)["live_processor"]
    assert (live["group"], live["lag"], live["prefetches"]) == (f"{topics.topic_prefix}.live", 0, 0)
    assert [p["committed"] for p in live["partitions"]] == [None] * topics.partitions
    human = await acli(topics, "projections", "status", "--interval", "0")
    assert human.returncode == OK and "boom" in human.stdout and "never run" in human.stdout
    assert "live processor" in human.stdout


async def test_commands_refuse_bad_arguments_with_documented_exit_codes(
    topics: Settings, db: Any
) -> None:
    await project_v1(topics, ConversationsProjection())
    cases = [
        (("projections", "rebuild", "extraction"), USAGE, "reprocess"),
        (("projections", "rebuild", "nope"), USAGE, "invalid choice"),
        (("projections", "rebuild", "memories", "--since", "yesterday"), USAGE, "ISO-8601"),
        (("projections", "rebuild", "memories", "--since", "2026-01-01T00:00"), USAGE, "zone"),
        (("projections", "swap", "conversations", "9"), NOT_FOUND, "not registered"),
        (("projections", "drop", "conversations", "9"), NOT_FOUND, "not registered"),
        (("projections", "drop", "conversations", "1"), USAGE, "is live"),
        (("reprocess", "extraction", "--extractor", "gpt"), USAGE, "rules, llm or llm:MODEL"),
        (("reprocess", "extraction", "--extractor", "llm"), USAGE, "MEMSTREAM_LLM_MODEL"),
        (("projections", "run", "memories", "--since", "2026-01-01T00:00Z"), USAGE, "--version"),
    ]
    for args, code, message in cases:
        result = await acli(topics, *args)
        assert result.returncode == code, (args, result.returncode, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_commands_exit_3_when_the_infrastructure_does_not_answer(settings: Settings) -> None:
    down = settings.replace(
        kafka_bootstrap=f"127.0.0.1:{closed_port()}",
        database_url=f"postgresql://postgres@127.0.0.1:{closed_port()}/memstream",
    )
    for args in (
        ("projections", "status"),
        ("projections", "rebuild", "memories"),
        ("reprocess", "embeddings", "--model", "local"),
    ):
        result = cli(down, *args, timeout=120)
        assert result.returncode == UNAVAILABLE, (args, result.stderr)
        assert result.stderr.startswith("memstream: "), result.stderr
