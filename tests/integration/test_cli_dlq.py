"""`memstream dlq` as an operator runs it: a real runner dead-letters real events on a real
broker; the command (a real process) lists, shows, replays and purges them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import orjson
import pytest
from psycopg import AsyncConnection

from projections import build
from projections.conversations import ConversationsProjection
from schemas import Event, utc_now
from services.settings import Settings
from streams import EventLog, ProjectionRunner, versions
from streams.topics import Topics
from tests.helpers import call_events, closed_port, eventually, read_topic, scalar

# The "bug": conversations_v1 refuses to record the end of the conversations listed in
# public.rejected. Deleting a row from that table is "the fix" for that conversation.
REJECT_ENDS = """
CREATE TABLE public.rejected (conversation_id text PRIMARY KEY);
CREATE FUNCTION public.reject_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'ended' AND EXISTS (
        SELECT 1 FROM public.rejected r WHERE r.conversation_id = NEW.conversation_id
    ) THEN
        RAISE EXCEPTION '% rejected by the test trigger', NEW.conversation_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER reject_end BEFORE INSERT OR UPDATE ON conversations_v1.conversations
    FOR EACH ROW EXECUTE FUNCTION public.reject_end();
"""

# Counts every committed write of a conversation's end: how many times it was projected.
COUNT_ENDS = """
CREATE TABLE public.ends (conversation_id text NOT NULL);
CREATE FUNCTION public.count_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'ended' THEN
        INSERT INTO public.ends VALUES (NEW.conversation_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER count_end AFTER INSERT OR UPDATE ON conversations_v1.conversations
    FOR EACH ROW EXECUTE FUNCTION public.count_end();
"""


def dlq(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run `memstream dlq ARGS` as a process; its CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "dlq", *args],
        env={**os.environ, **settings.to_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


async def dlq_json(settings: Settings, *args: str, expect: int = 0) -> Any:
    done = await asyncio.to_thread(dlq, settings, *args, "--json")
    assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


async def dead_lettered(
    settings: Settings, db: AsyncConnection[Any], ended: int, letters: int = 1
) -> None:
    """Run the conversations projection (v1) until `ended` conversations ended and
    `letters` dead letters are on the DLQ topic."""
    await versions.register(db, ConversationsProjection(), 1)  # so progress() finds the tables
    runner = ProjectionRunner(build("conversations", settings), settings)
    task = asyncio.create_task(runner.run())
    dlq_topic = Topics(settings.topic_prefix).dlq

    async def progress() -> tuple[int, int]:
        count = await scalar(
            db, "SELECT count(*) FROM conversations_v1.conversations WHERE status = 'ended'"
        )
        return int(count), len(await read_topic(settings, dlq_topic))

    try:
        await eventually(progress, lambda p: p == (ended, letters), timeout=120, interval=0.5)
    finally:
        runner.stop()
        await task


async def rejected(
    settings: Settings, db: AsyncConnection[Any], *conversations: str
) -> dict[str, Event]:
    """Four calls appended; the ends of `conversations` dead-lettered by the trigger, the
    rest projected. Returns their conversation.ended events by conversation id."""
    await versions.register(db, ConversationsProjection(), 1)
    await db.execute(REJECT_ENDS)
    await db.execute(COUNT_ENDS)
    for conversation in conversations:
        await db.execute("INSERT INTO public.rejected VALUES (%s)", [conversation])
    events = call_events("acme", 4)
    async with EventLog(settings) as log:
        await log.append_many(events)
    await dead_lettered(settings, db, ended=4 - len(conversations), letters=len(conversations))
    # call_events: conversation i is started at 2i and ended at 2i+1.
    ended = {f"conv-{i}": events[2 * i + 1] for i in range(4)}
    assert all(e.type == "conversation.ended" for e in ended.values())
    return {c: ended[c] for c in conversations}


async def fix(db: AsyncConnection[Any], conversation: str) -> None:
    await db.execute("DELETE FROM public.rejected WHERE conversation_id = %s", [conversation])


async def ends(db: AsyncConnection[Any], conversation: str) -> int:
    """How many times the conversation's end was written (committed)."""
    query = "SELECT count(*) FROM public.ends WHERE conversation_id = %s"
    return int(await scalar(db, query, conversation))


async def conversation(
    db: AsyncConnection[Any], conversation_id: str, schema: str = "conversations_v1"
) -> tuple[Any, ...]:
    """(status, turn_count, turns stored) of a conversation in a version's tables."""
    cursor = await db.execute(
        f"SELECT status, turn_count, (SELECT count(*) FROM {schema}.turns"
        f" WHERE conversation_id = %s) FROM {schema}.conversations WHERE conversation_id = %s",
        [conversation_id, conversation_id],
    )
    row = await cursor.fetchone()
    return tuple(row) if row else ()


async def test_dead_letters_replayed_after_the_fix_are_projected_exactly_once(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    settings = topics.replace(poison_retries=1, retry_backoff_ms=10)
    ended = await rejected(settings, db, "conv-2", "conv-3")
    for conversation_id in ("conv-2", "conv-3"):
        assert await conversation(db, conversation_id) == ("started", 0, 0)
    assert await conversation(db, "conv-1") == ("ended", 4, 4)

    # A runner that crashed after writing a letter and before committing writes it again.
    records = await read_topic(settings, Topics(settings.topic_prefix).dlq)
    record = next(r for r in records if str(ended["conv-2"].id).encode() in r.value)
    again = {**orjson.loads(record.value), "failed_at": utc_now().isoformat()}
    async with EventLog(settings) as log:
        await log.append_raw(record.topic, record.key, orjson.dumps(again), [])

    listed = await dlq_json(settings, "list")
    assert sorted(x["event_id"] for x in listed) == sorted(str(e.id) for e in ended.values())
    letter = next(x for x in listed if x["event_id"] == str(ended["conv-2"].id))
    assert letter["status"] == "pending" and letter["resolution"] is None
    assert (letter["projection"], letter["version"], letter["stage"]) == (
        "conversations",
        1,
        "apply",
    )
    assert letter["topic"] == Topics(settings.topic_prefix).conversations
    assert letter["event_type"] == "conversation.ended"
    assert "conv-2 rejected by the test trigger" in letter["error"]["message"]
    assert letter["attempts"] == settings.poison_retries + 1
    assert letter["copies"] == 2

    # Before the fix: both still fail, are rolled back, and stay pending (exit 5).
    still = await dlq_json(settings, "replay", "--all", expect=5)
    assert still["counts"] == {"failed": 2}
    assert {x["id"] for x in await dlq_json(settings, "list")} == {x["id"] for x in listed}

    # conv-2 fixed: it is replayed; conv-3, still failing in the same run, stays pending.
    await fix(db, "conv-2")
    partly = await dlq_json(settings, "replay", "--all", expect=5)
    assert partly["counts"] == {"failed": 1, "replayed": 1}
    assert await conversation(db, "conv-2") == ("ended", 4, 4)
    assert await conversation(db, "conv-3") == ("started", 0, 0)
    [pending] = await dlq_json(settings, "list")
    assert pending["event_id"] == str(ended["conv-3"].id)

    # conv-3 fixed; then two operators replay at the same moment: it lands once.
    await fix(db, "conv-3")
    first, second = await asyncio.gather(
        dlq_json(settings, "replay", "--all"), dlq_json(settings, "replay", "--all")
    )
    outcomes = [x["status"] for run in (first, second) for x in run["letters"]]
    assert sorted(outcomes) in (["replayed"], ["already_resolved", "replayed"])
    assert await conversation(db, "conv-3") == ("ended", 4, 4)

    # Replaying again, in bulk or by id prefix, projects nothing more and exits 0.
    assert (await dlq_json(settings, "replay", "--all"))["letters"] == []
    by_id = await dlq_json(settings, "replay", letter["id"][:8])
    assert [x["status"] for x in by_id["letters"]] == ["already_resolved"]
    assert by_id["letters"][0]["resolution"]["resolution"] == "replayed"
    for conversation_id in ("conv-0", "conv-1", "conv-2", "conv-3"):
        assert await ends(db, conversation_id) == 1, conversation_id
    assert await scalar(db, "SELECT count(*) FROM conversations_v1.conversations") == 4

    assert await dlq_json(settings, "list") == []
    resolved = await dlq_json(settings, "list", "--all")
    assert [x["status"] for x in resolved] == ["replayed", "replayed"]
    assert all(x["resolution"]["into_version"] == 1 for x in resolved)
    assert all(x["resolution"]["resolved_by"] for x in resolved)
    shown = await dlq_json(settings, "show", letter["id"])
    assert shown["decodes"] and shown["payload"]["id"] == str(ended["conv-2"].id)
    assert "conv-2 rejected" in shown["error"]["traceback"]
    human = await asyncio.to_thread(dlq, settings, "list", "--all")
    assert human.returncode == 0 and letter["id"][:8] in human.stdout
    assert "replayed" in human.stdout and "2 dead letter(s), 0 pending" in human.stdout


async def test_a_letter_that_does_not_decode_fails_again_and_is_purged_not_deleted(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    settings = topics.replace(poison_retries=1, retry_backoff_ms=10)
    tp = Topics(settings.topic_prefix)
    async with EventLog(settings) as log:
        await log.append_many(call_events("acme", 2))
        garbage = await log.append_raw(tp.conversations, b"acme/+15550000000", b"{not json", [])
    await dead_lettered(settings, db, ended=2)
    # Something that is not a dead letter on the DLQ topic is reported, not fatal.
    async with EventLog(settings) as log:
        await log.append_raw(tp.dlq, None, b"not a dead letter", [])

    [letter] = await dlq_json(settings, "list")
    assert (letter["stage"], letter["event_type"], letter["event_id"]) == ("decode", None, None)
    assert (letter["partition"], letter["offset"]) == (garbage.partition, garbage.offset)
    assert letter["error"]["type"] == "MalformedEvent"
    shown = await dlq_json(settings, "show", letter["id"])
    assert shown["decodes"] is False and shown["payload"] == "{not json"
    assert shown["decode_error"]["type"] == "MalformedEvent" and shown["error"]["traceback"]
    human = await asyncio.to_thread(dlq, settings, "show", letter["id"])
    assert human.returncode == 0, human.stderr
    assert letter["id"] in human.stdout and "{not json" in human.stdout
    listed = await asyncio.to_thread(dlq, settings, "list")
    assert listed.returncode == 0 and letter["id"][:8] in listed.stdout
    assert "1 record(s) on the DLQ topic are not dead letters" in listed.stderr

    # Decoding is deterministic: replaying cannot help; it stays pending (exit 5).
    failed = await dlq_json(settings, "replay", "--all", expect=5)
    assert [x["status"] for x in failed["letters"]] == ["failed"]
    assert "MalformedEvent" in failed["letters"][0]["error"]
    assert [x["id"] for x in await dlq_json(settings, "list")] == [letter["id"]]

    # --all needs --yes; a purge by id records the reason and keeps the letter.
    refused = await asyncio.to_thread(dlq, settings, "purge", "--all")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    purged = await dlq_json(settings, "purge", letter["id"], "--reason", "load-test garbage")
    assert purged["counts"] == {"purged": 1}
    assert await dlq_json(settings, "list") == []
    [kept] = await dlq_json(settings, "list", "--all")
    assert kept["status"] == "purged" and kept["resolution"]["reason"] == "load-test garbage"
    assert kept["resolution"]["into_version"] is None
    assert len(await read_topic(settings, tp.dlq)) == 2  # the letter, and the stray record

    # A purged letter is resolved: replay and purge leave it as it is.
    again = await dlq_json(settings, "replay", letter["id"])
    assert again["letters"][0]["status"] == "already_resolved"
    assert again["letters"][0]["resolution"]["resolution"] == "purged"
    assert (await dlq_json(settings, "purge", "--all", "--yes"))["letters"] == []

    # Unknown ids: exit 4, nothing done.
    unknown = "00000000-0000-0000-0000-000000000000"
    for args in (["show", unknown], ["replay", unknown], ["purge", letter["id"], unknown]):
        done = await asyncio.to_thread(dlq, settings, *args)
        assert done.returncode == 4, (args, done.stderr)
        assert "no dead letter" in done.stderr
    assert (await dlq_json(settings, "list", "--all"))[0]["resolution"]["reason"] == (
        "load-test garbage"
    )


async def test_a_letter_whose_version_was_dropped_goes_to_the_live_version_on_request(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    settings = topics.replace(poison_retries=1, retry_backoff_ms=10)
    await rejected(settings, db, "conv-2")
    projection = ConversationsProjection()
    await versions.register(db, projection, 2)
    await versions.switch_live(db, projection, 2)
    await versions.drop_version(db, projection, 1)

    missing = await dlq_json(settings, "replay", "--all", expect=4)
    assert [x["status"] for x in missing["letters"]] == ["version_missing"]
    assert "no longer exists" in missing["letters"][0]["error"]
    assert len(await dlq_json(settings, "list")) == 1

    done = await dlq_json(settings, "replay", "--all", "--to-live")
    assert [(x["status"], x["into_version"]) for x in done["letters"]] == [("replayed", 2)]
    assert await conversation(db, "conv-2", "conversations_v2") == ("ended", 4, 4)
    [resolved] = await dlq_json(settings, "list", "--all")
    assert (resolved["version"], resolved["resolution"]["into_version"]) == (1, 2)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["show"],
        ["replay"],
        ["replay", "abc", "--all"],
        ["replay", "--projection", "conversations"],
        ["purge"],
        ["purge", "--all"],
        ["purge", "abc", "--all", "--yes"],
        ["list", "--bogus"],
    ],
)
def test_bad_arguments_exit_2_before_touching_the_infrastructure(args: list[str]) -> None:
    # Nothing answers on these endpoints: an exit 2 means the arguments were judged first.
    nowhere = Settings(
        kafka_bootstrap=f"127.0.0.1:{closed_port()}",
        database_url=f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere",
    )
    done = dlq(nowhere, *args)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert done.stderr.strip()


def test_unreachable_infrastructure_exits_3_and_every_action_explains_itself() -> None:
    nowhere = Settings(
        kafka_bootstrap=f"127.0.0.1:{closed_port()}",
        database_url=f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere",
    )
    done = dlq(nowhere, "list")
    assert done.returncode == 3 and "unreachable" in done.stderr
    for action, words in (
        ("list", "pending"),
        ("show", "traceback"),
        ("replay", "projected once"),
        ("purge", "--yes"),
    ):
        helped = dlq(nowhere, action, "--help")
        assert helped.returncode == 0 and words in " ".join(helped.stdout.split()), action
