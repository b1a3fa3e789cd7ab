"""Dead letters read back from the DLQ topic: what the runtime wrote is what the tooling reads."""

from __future__ import annotations

import orjson
import pytest

from schemas import EventDecodeError, MalformedEvent, encode_event
from streams.dlq import (
    AmbiguousDeadLetter,
    DeadLetter,
    DeadLetters,
    StoredLetter,
    UnknownDeadLetter,
)
from tests.helpers import call_events


def letter(value: bytes, offset: int, error: BaseException, stage: str = "apply") -> DeadLetter:
    return DeadLetter(
        projection="conversations",
        version=2,
        topic="p.conversations",
        partition=1,
        offset=offset,
        timestamp_ms=1_700_000_000_000,
        key=b"acme/+15550000001",
        value=value,
        stage=stage,
        error=error,
        attempts=4,
    )


def test_a_written_letter_reads_back_with_its_event_and_error() -> None:
    event = call_events("acme", 1)[1]
    written = letter(encode_event(event), 7, RuntimeError("constraint violated"))
    stored = StoredLetter.from_record(written.encode(), dlq_partition=1, dlq_offset=3)
    assert (stored.projection, stored.version, stored.partition, stored.offset) == (
        "conversations",
        2,
        1,
        7,
    )
    assert stored.value == encode_event(event) and stored.event().id == event.id
    assert stored.pending and stored.status == "pending"
    summary = stored.summary()
    assert (summary["event_type"], summary["event_id"]) == (event.type, str(event.id))
    assert summary["error"] == {"type": "RuntimeError", "code": None,
                                "message": "constraint violated"}  # fmt: skip
    details = stored.details()
    assert details["decodes"] and details["payload"]["id"] == str(event.id)
    assert details["dlq"] == {"partition": 1, "offset": 3}


def test_bytes_that_are_not_utf8_survive_the_round_trip_unchanged() -> None:
    raw = b"\xff\xfe not an event \x00"
    written = letter(raw, 8, MalformedEvent("not json", code="not_json"), stage="decode")
    assert orjson.loads(written.encode())["payload_encoding"] == "base64"
    stored = StoredLetter.from_record(written.encode(), dlq_partition=0, dlq_offset=0)
    assert stored.value == raw
    with pytest.raises(EventDecodeError):
        stored.event()
    details = stored.details()
    assert details["decodes"] is False and details["event_type"] is None
    assert details["payload"] == raw.decode("utf-8", "backslashreplace")


@pytest.mark.parametrize(
    "value",
    [b"{not json", b"[]", b'{"id": "x"}', orjson.dumps({"id": "not-a-uuid", "payload": ""})],
)
def test_a_record_that_is_not_a_dead_letter_is_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a dead letter"):
        StoredLetter.from_record(value, dlq_partition=0, dlq_offset=0)


def test_letters_are_found_by_id_or_unique_prefix() -> None:
    stored = [
        StoredLetter.from_record(letter(b"{}", n, ValueError("x")).encode(), 0, n)
        for n in range(40)
    ]
    letters = DeadLetters(stored)
    target = stored[5]
    assert letters.find(target.id) is target
    assert letters.find(target.id[:13].upper()) is target
    with pytest.raises(UnknownDeadLetter):
        letters.find("00000000-0000-0000-0000-000000000000")
    with pytest.raises(UnknownDeadLetter):
        letters.find("")
    # 40 random-looking ids share some one-character prefix.
    first = {s.id[0] for s in stored}
    common = next(c for c in first if sum(s.id.startswith(c) for s in stored) > 1)
    with pytest.raises(AmbiguousDeadLetter):
        letters.find(common)
