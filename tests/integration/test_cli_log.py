"""`memstream log tail|dump|import` as a user runs them: real processes, broker and database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from projections.conversations import ConversationsProjection
from schemas import decode_event, derived_event_id, tenant_event_id
from services import tenants
from services.imports import parse_line
from services.settings import Settings
from streams import EventLog
from streams.topics import Topics
from tests.helpers import call_events, closed_port, read_topic, retire_topics, scalar
from tests.integration.ingest_fixtures import payload
from tests.integration.projection_contract import project

TENANT = "bayview"


def memstream(
    settings: Settings, *args: str, stdin: bytes | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[bytes]:
    """Run `memstream ARGS` as a separate process against the test's broker and database."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **settings.to_env(), "MEMSTREAM_LOG_LEVEL": "WARNING"},
        input=stdin, capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip


def conversation_lines(count: int, *, first: int = 0) -> list[bytes]:
    """ElevenLabs post-call transcription webhooks of `count` distinct conversations."""
    lines = []
    for i in range(first, first + count):
        body = payload("elevenlabs_post_call_transcription")
        body["data"]["conversation_id"] = f"conv-{i:05d}"
        variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
        variables["system__caller_id"] = f"+1415555{i % 10000:04d}"
        lines.append(orjson.dumps(body))
    return lines


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def summary(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(result.stdout)
    return loaded


def json_lines(output: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in output.splitlines() if line.strip()]


async def conversation_records(settings: Settings) -> list[Any]:
    return await read_topic(settings, Topics(settings.topic_prefix).conversations)


# -- import -------------------------------------------------------------------------------


async def test_importing_the_same_file_twice_imports_it_once(
    topics: Settings, db: Any, tmp_path: Path
) -> None:
    await tenants.create_tenant(db, TENANT, default_region="US")
    history = write_lines(tmp_path / "history.jsonl", conversation_lines(25))

    first = memstream(topics, "log", "import", str(history), "--tenant", TENANT, "--json")
    assert first.returncode == 0, first.stderr
    assert summary(first) | {"rejections": []} == {
        "dry_run": False, "lines": 25, "imported": 25, "already_imported": 0, "empty": 0,
        "erased": 0, "rejected": 0, "events_appended": 25, "rejections": [],
    }  # fmt: skip
    second = memstream(topics, "log", "import", str(history), "--tenant", TENANT, "--json")
    assert second.returncode == 0, second.stderr
    assert summary(second)["imported"] == 0 and summary(second)["already_imported"] == 25
    assert summary(second)["events_appended"] == 0

    records = await conversation_records(topics)
    assert len(records) == 25
    assert len({orjson.loads(r.value)["id"] for r in records}) == 25
    assert await scalar(db, "SELECT count(*) FROM memstream.imported_events") == 25
    # Conversations are all platform payloads produce: the derived topics were not scanned.
    scanned = await db.execute("SELECT DISTINCT topic FROM memstream.import_log_positions")
    assert [row[0] for row in await scanned.fetchall()] == [
        Topics(topics.topic_prefix).conversations
    ]
    await project(topics, ConversationsProjection())
    assert await scalar(db, "SELECT count(*) FROM conversations.conversations") == 25
    assert (
        await scalar(
            db,
            "SELECT count(*) FROM conversations.conversations WHERE tenant = %s"
            " AND conversation_id = 'conv-00007'",
            TENANT,
        )
        == 1
    )


async def test_a_dry_run_counts_and_appends_nothing(
    topics: Settings, db: Any, tmp_path: Path
) -> None:
    await tenants.create_tenant(db, TENANT, default_region="US")
    history = write_lines(tmp_path / "history.jsonl", conversation_lines(4))
    result = memstream(
        topics, "log", "import", str(history), "--tenant", TENANT, "--dry-run", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert summary(result)["imported"] == 4 and summary(result)["dry_run"] is True
    assert await conversation_records(topics) == []
    assert await scalar(db, "SELECT count(*) FROM memstream.imported_events") == 0


async def test_bad_lines_are_reported_and_the_good_ones_imported(
    topics: Settings, db: Any, tmp_path: Path
) -> None:
    await tenants.create_tenant(db, TENANT, default_region="US")
    good = conversation_lines(3)
    invalid = payload("elevenlabs_post_call_transcription")
    invalid["data"]["transcript"] = "not a list of turns"
    lines = [
        b"\xef\xbb\xbf" + good[0],  # a byte order mark before the first line is no error
        b'{"type": "post_call_transcription", "data": {',  # line 2: cut off
        b'{"hello": "world"}',  # line 3: no format memstream knows
        orjson.dumps(invalid),  # line 4: fails validation
        good[1],
        b"",  # blank lines are not lines of data
        good[2],
    ]
    history = write_lines(tmp_path / "mixed.jsonl", lines)

    result = memstream(topics, "log", "import", str(history), "--tenant", TENANT, "--json")
    assert result.returncode == 5, result.stderr
    report = summary(result)
    assert report["imported"] == 3 and report["rejected"] == 3
    assert [(r["line"], r["code"]) for r in report["rejections"]] == [
        (2, "malformed_json"),
        (3, "unknown_format"),
        (4, "invalid_payload"),
    ]
    assert "data.transcript" in report["rejections"][2]["reason"]
    stderr = result.stderr.decode()
    assert "line 2: malformed_json" in stderr and "line 4: invalid_payload" in stderr
    records = await conversation_records(topics)
    assert sorted(orjson.loads(r.value)["data"]["conversation_id"] for r in records) == [
        "conv-00000",
        "conv-00001",
        "conv-00002",
    ]


async def test_concurrent_imports_of_one_file_append_it_once(
    topics: Settings, db: Any, tmp_path: Path
) -> None:
    await tenants.create_tenant(db, TENANT, default_region="US")
    history = write_lines(tmp_path / "history.jsonl", conversation_lines(300))
    command = [sys.executable, "-m", "services.cli", "log", "import", str(history)]
    env = {**os.environ, **topics.to_env(), "MEMSTREAM_LOG_LEVEL": "WARNING"}
    processes = [
        subprocess.Popen(
            [*command, "--tenant", TENANT, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]
    reports = [orjson.loads(out) for out, _ in outputs]
    assert sorted(r["events_appended"] for r in reports) == [0, 300]
    assert len(await conversation_records(topics)) == 300


async def test_an_import_that_crashed_after_the_ack_appends_nothing_again(
    topics: Settings, db: Any, tmp_path: Path
) -> None:
    # The crash window: the broker acknowledged the events, the ledger write never happened.
    await tenants.create_tenant(db, TENANT, default_region="US")
    lines = conversation_lines(5)
    acknowledged = [
        event
        for line in lines[:3]
        for event in parse_line(
            line, platform="auto", tenant=TENANT, default_region="US", received_at=datetime.now(UTC)
        )
    ]
    async with EventLog(topics) as log:
        await log.append_many(acknowledged)

    result = memstream(
        topics, "log", "import", str(write_lines(tmp_path / "h.jsonl", lines)), "--tenant",
        TENANT, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert summary(result)["already_imported"] == 3 and summary(result)["imported"] == 2
    assert len(await conversation_records(topics)) == 5


async def test_one_history_imported_for_two_tenants_is_appended_for_each(
    topics: Settings, db: Any, tmp_path: Path
) -> None:
    # Staging and production, both from before webhook event ids included the tenant:
    # the two copies of a call have the same (earlier) id, told apart by the tenant.
    history = write_lines(tmp_path / "history.jsonl", conversation_lines(3))
    for tenant in (TENANT, "bayview-staging"):
        await tenants.create_tenant(db, tenant, default_region="US")
        await db.execute(  # what migration 0007 does to the tenants that exist
            "UPDATE memstream.tenants SET legacy_ids_before = now() + interval '1 hour'"
            " WHERE tenant = %s",
            [tenant],
        )
        result = memstream(topics, "log", "import", str(history), "--tenant", tenant, "--json")
        assert result.returncode == 0, result.stderr
        assert summary(result)["imported"] == 3 and summary(result)["already_imported"] == 0
    again = memstream(topics, "log", "import", str(history), "--tenant", TENANT, "--json")
    assert summary(again)["imported"] == 0 and summary(again)["already_imported"] == 3

    records = [orjson.loads(r.value) for r in await conversation_records(topics)]
    assert len(records) == 6
    assert {r["id"] for r in records} == {
        str(derived_event_id("elevenlabs", "post_call_transcription", f"conv-{i:05d}"))
        for i in range(3)
    }
    assert await scalar(db, "SELECT count(*) FROM memstream.imported_events") == 6


async def test_importing_calls_a_tenant_had_before_the_upgrade_appends_nothing_again(
    topics: Settings, db: Any, tmp_path: Path
) -> None:
    await tenants.create_tenant(db, TENANT, default_region="US")
    await db.execute(
        "UPDATE memstream.tenants SET legacy_ids_before = now() + interval '1 hour'"
        " WHERE tenant = %s",
        [TENANT],
    )
    # Appended before the upgrade, with the earlier ids (no tenant in them).
    lines = conversation_lines(3)
    earlier = [
        event.model_copy(
            update={
                "id": derived_event_id("elevenlabs", "post_call_transcription", f"conv-{i:05d}")
            }
        )
        for i, line in enumerate(lines)
        for event in parse_line(
            line, platform="auto", tenant=TENANT, default_region="US", received_at=datetime.now(UTC)
        )
    ]
    async with EventLog(topics) as log:
        await log.append_many(earlier)

    history = write_lines(tmp_path / "h.jsonl", lines)
    result = memstream(topics, "log", "import", str(history), "--tenant", TENANT, "--json")
    assert result.returncode == 0, result.stderr
    assert summary(result)["already_imported"] == 3 and summary(result)["imported"] == 0

    # A tenant created since gets its own ids for the same calls.
    await tenants.create_tenant(db, "bayview-new", default_region="US")
    result = memstream(topics, "log", "import", str(history), "--tenant", "bayview-new", "--json")
    assert summary(result)["imported"] == 3
    records = [orjson.loads(r.value) for r in await conversation_records(topics)]
    assert sorted(r["id"] for r in records if r["tenant"] == "bayview-new") == sorted(
        str(
            tenant_event_id("bayview-new", "elevenlabs", "post_call_transcription", f"conv-{i:05d}")
        )
        for i in range(3)
    )


async def test_a_dump_imported_back_appends_nothing(topics: Settings, db: Any) -> None:
    # These events came in through the producer (as webhooks would), not an import: the
    # ledger learns them from the log itself.
    events = call_events("acme", 4) + call_events("beta", 2)
    async with EventLog(topics) as log:
        await log.append_many(events)

    dump = memstream(topics, "log", "dump", "--json")
    assert dump.returncode == 0, dump.stderr
    assert {d["id"] for d in json_lines(dump.stdout)} == {str(e.id) for e in events}
    back = memstream(topics, "log", "import", "-", "--json", stdin=dump.stdout)
    assert back.returncode == 0, back.stderr
    assert summary(back)["already_imported"] == 12 and summary(back)["events_appended"] == 0
    assert len(await conversation_records(topics)) == 12


async def test_dumped_events_go_back_into_an_empty_log_unchanged(topics: Settings, db: Any) -> None:
    events = call_events("acme", 3)
    async with EventLog(topics) as log:
        await log.append_many(events)
    dump = memstream(topics, "log", "dump", "--json")
    elsewhere = topics.replace(topic_prefix=f"{topics.topic_prefix}-copy")
    try:
        copy = memstream(elsewhere, "log", "import", "-", "--json", stdin=dump.stdout)
        assert copy.returncode == 0, copy.stderr
        assert summary(copy)["events_appended"] == 6
        copied = await conversation_records(elsewhere)
    finally:
        retire_topics(elsewhere)  # not the test's prefix: deleted with the test's
    # The same events; not the same bytes: sealing draws a fresh nonce each time.
    assert sorted(decode_event(r.value).model_dump_json() for r in copied) == sorted(
        decode_event(r.value).model_dump_json() for r in await conversation_records(topics)
    )


# -- dump and tail ------------------------------------------------------------------------


async def test_dump_filters_by_tenant_type_subject_and_time(topics: Settings) -> None:
    early, late = call_events("acme", 3) + call_events("beta", 2), call_events("acme", 5)[3:]
    async with EventLog(topics) as log:
        await log.append_many(early)
        await asyncio.sleep(0.05)
        between = datetime.now(UTC).isoformat()
        await asyncio.sleep(0.05)
        await log.append_many(late)

    def ids(*args: str) -> set[str]:
        result = memstream(topics, "log", "dump", "--json", *args)
        assert result.returncode == 0, result.stderr
        return {line["id"] for line in json_lines(result.stdout)}

    acme = [e for e in early + late if e.tenant == "acme"]
    assert ids("--tenant", "acme") == {str(e.id) for e in acme}
    assert ids("--tenant", "acme", "--type", "conversation.end") == {
        str(e.id) for e in acme if e.type == "conversation.ended"
    }
    assert ids("--type", "conversation.started", "--type", "memory.") == {
        str(e.id) for e in early + late if e.type == "conversation.started"
    }
    assert ids("--subject", "beta/+15550000001") == {
        str(e.id) for e in early if e.subject == "beta/+15550000001"
    }
    assert ids("--since", between) == {str(e.id) for e in late}
    assert ids("--until", between) == {str(e.id) for e in early}
    assert ids("--topic", "memories") == set()

    human = memstream(topics, "log", "dump", "--tenant", "beta", "--limit", "3")
    lines = human.stdout.decode().splitlines()
    assert human.returncode == 0 and len(lines) == 3
    assert all(" beta/+1555000000" in line and "conversations@" in line for line in lines)


async def test_dump_is_in_time_order_with_coordinates(topics: Settings) -> None:
    async with EventLog(topics) as log:
        for event in call_events("acme", 6):
            await log.append(event)  # one at a time: increasing timestamps across partitions
            await asyncio.sleep(0.002)
    result = memstream(topics, "log", "dump", "--json")
    dumped = json_lines(result.stdout)
    assert [d["data"]["conversation_id"] for d in dumped] == [
        f"conv-{i}" for i in range(6) for _ in range(2)
    ]
    records = {(r.partition, r.offset): r for r in await conversation_records(topics)}
    for line in dumped:
        coordinates = line["log"]
        assert coordinates["topic"] == "conversations"
        record = records[(coordinates["partition"], coordinates["offset"])]
        assert orjson.loads(record.value)["id"] == line["id"]


async def test_undecodable_records_are_shown_as_such(topics: Settings, tmp_path: Path) -> None:
    conversations = Topics(topics.topic_prefix).conversations
    async with EventLog(topics) as log:
        await log.append_many(call_events("acme", 1))
        await log.append_raw(conversations, b"acme/+15550000000", b"\xffnot json", [])

    human = memstream(topics, "log", "dump")
    assert human.returncode == 0, human.stderr
    assert human.stdout.decode().count("conversation.") == 2
    assert "<undecodable: event is not valid JSON" in human.stdout.decode()
    out = tmp_path / "dump.jsonl"
    as_json = memstream(topics, "log", "dump", "--json", "--output", str(out))
    assert as_json.returncode == 0, as_json.stderr
    lines = json_lines(out.read_bytes())
    # Time order across partitions: the raw record can share a millisecond with the call's
    # last event, so its place among the three is not asserted.
    undecodable = [line for line in lines if line.get("undecodable") is not None]
    assert len(lines) == 3 and len(undecodable) == 1
    assert undecodable[0]["key"] == "acme/+15550000000"
    # A record that is no event has no type: a type filter leaves it out.
    typed = memstream(topics, "log", "dump", "--type", "conversation.")
    assert "<undecodable" not in typed.stdout.decode()


async def test_tail_sees_events_appended_after_it_started(topics: Settings) -> None:
    before = call_events("old", 2)
    async with EventLog(topics) as log:
        await log.append_many(before)
        tail = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "log", "tail", "--json", "--limit", "3",
             "--type", "conversation.ended"],
            env={**os.environ, **topics.to_env(), "MEMSTREAM_LOG_LEVEL": "WARNING"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        appended: list[str] = []
        try:
            # The tail starts at the end of the log whenever it gets there: append until
            # it has seen three matching events and exits.
            deadline = time.monotonic() + 120
            while tail.poll() is None and time.monotonic() < deadline:
                batch = call_events(f"new{len(appended)}", 1)
                await log.append_many(batch)
                appended.extend(str(e.id) for e in batch)
                await asyncio.sleep(0.3)
            stdout, stderr = tail.communicate(timeout=30)
        finally:
            if tail.poll() is None:
                tail.kill()
    assert tail.returncode == 0, stderr
    seen = json_lines(stdout)
    assert len(seen) == 3
    assert all(line["type"] == "conversation.ended" for line in seen)
    assert {line["id"] for line in seen} <= set(appended)
    assert not {line["id"] for line in seen} & {str(e.id) for e in before}


async def test_tail_from_the_beginning_replays_first(topics: Settings) -> None:
    events = call_events("acme", 3)
    async with EventLog(topics) as log:
        await log.append_many(events)
    result = memstream(topics, "log", "tail", "--from-beginning", "--limit", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json_lines(result.stdout)) == 4


async def test_tail_stops_with_exit_0_on_ctrl_c(topics: Settings) -> None:
    tail = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "log", "tail", "--json"],
        env={**os.environ, **topics.to_env()},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert tail.stdout is not None
    try:
        # Interrupted while it follows the log: once it has printed an event appended
        # after it started (appended until it does, as it starts at the end whenever it
        # gets there).
        first_line = asyncio.ensure_future(asyncio.to_thread(tail.stdout.readline))
        async with EventLog(topics) as log:
            deadline = time.monotonic() + 120
            while not first_line.done() and time.monotonic() < deadline:
                await log.append_many(call_events("acme", 1))
                await asyncio.wait([first_line], timeout=0.3)
        assert first_line.done(), "the tail printed no appended event within 120 s"
        assert tail.poll() is None, tail.communicate(timeout=60)[1]
        assert orjson.loads(await first_line)["tenant"] == "acme"
        tail.send_signal(signal.SIGINT)
        _, stderr = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0, stderr


# -- exit codes ---------------------------------------------------------------------------


def test_a_missing_file_exits_2(settings: Settings, tmp_path: Path) -> None:
    result = memstream(settings, "log", "import", str(tmp_path / "nope.jsonl"), "--tenant", "x")
    assert result.returncode == 2
    assert b"cannot read" in result.stderr and b"nope.jsonl" in result.stderr


def test_bad_arguments_exit_2(settings: Settings, tmp_path: Path) -> None:
    file = write_lines(tmp_path / "h.jsonl", conversation_lines(1))
    for args in (
        ["log", "import", str(file), "--platform", "vapi"],  # a platform needs --tenant
        ["log", "import", str(file), "--platform", "zoom"],
        ["log", "dump", "--since", "last tuesday"],
        ["log", "dump", "--limit", "0"],
        ["log", "tail", "--topic", "dlq"],
        ["log", "tail", "--from-beginning", "--since", "1h"],
        ["log"],
    ):
        result = memstream(settings, *args)
        assert result.returncode == 2, (args, result.stderr)


async def test_an_unknown_tenant_exits_4(topics: Settings, db: Any, tmp_path: Path) -> None:
    file = write_lines(tmp_path / "h.jsonl", conversation_lines(1))
    result = memstream(topics, "log", "import", str(file), "--tenant", "nobody")
    assert result.returncode == 4
    assert b"no tenant 'nobody'" in result.stderr
    assert await conversation_records(topics) == []


def test_an_unreachable_broker_exits_3(settings: Settings, tmp_path: Path) -> None:
    gone = settings.replace(kafka_bootstrap=f"127.0.0.1:{closed_port()}")
    file = write_lines(tmp_path / "h.jsonl", conversation_lines(1))
    for args in (
        ["log", "dump"],
        ["log", "tail"],
        ["log", "import", str(file), "--platform", "events"],
    ):
        result = memstream(gone, *args)
        assert result.returncode == 3, (args, result.stderr)
        assert b"unreachable" in result.stderr
