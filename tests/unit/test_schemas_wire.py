"""The wire format: encoding, decoding, upcasting and every decode error."""

from __future__ import annotations

import copy
import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import (
    Analysis,
    ConversationEnded,
    ConversationEndedData,
    Event,
    EventDecodeError,
    InvalidEvent,
    MalformedEvent,
    Source,
    ToolCall,
    Turn,
    UnknownEventType,
    decode_event,
    encode_event,
    event_class,
    registered_types,
)
from schemas import envelope as envelope_module

EXAMPLES = Path(__file__).parent / "schemas_examples"


def example(event_type: str, v: int) -> dict[str, Any]:
    return orjson.loads((EXAMPLES / f"{event_type}.v{v}.json").read_bytes())  # type: ignore[no-any-return]


def latest_example(event_type: str) -> Event:
    return decode_event(example(event_type, event_class(event_type).model_fields["v"].default))


def conversation_ended() -> ConversationEnded:
    started = datetime(2026, 11, 18, 8, 38, 51, 250_000, tzinfo=timezone(timedelta(hours=-8)))
    return ConversationEnded.create(
        tenant="acme",
        subject="acme/usr_1",
        occurred_at=started + timedelta(minutes=3),
        source=Source(platform="vapi", event_id="call_1", agent_id="asst_1"),
        correlation_id="call_1",
        data=ConversationEndedData(
            conversation_id="call_1",
            started_at=started,
            ended_at=started + timedelta(minutes=3),
            duration_secs=180.5,
            status="done",
            turns=(
                Turn(role="agent", text="Hi! How can I help?", offset_ms=0),
                Turn(
                    role="agent",
                    text="",
                    offset_ms=2500,
                    tool_calls=(
                        ToolCall(name="lookup", arguments={"q": "ünïcode", "n": 3}, result="ok"),
                    ),
                ),
                Turn(role="user", text="Ça va — merci 👍", offset_ms=4100),
            ),
            metadata={"cost": 0.42, "nested": {"list": [1, None, True]}},
            analysis=Analysis(summary="Small talk.", successful=True, evaluation={"x": 1}),
            dynamic_variables={"user_name": "Zoë"},
        ),
    )


# ---------------------------------------------------------------------- round trip


@pytest.mark.parametrize("key", registered_types(), ids=lambda key: f"{key[0]}.v{key[1]}")
def test_every_event_type_round_trips_through_the_wire(key: tuple[str, int]) -> None:
    event = latest_example(key[0])

    raw = encode_event(event)
    decoded = decode_event(raw)

    assert type(decoded) is type(event)
    assert decoded == event
    assert encode_event(decoded) == raw


def test_event_built_in_python_round_trips_with_unicode_offsets_and_nested_metadata() -> None:
    event = conversation_ended()

    decoded = decode_event(encode_event(event))

    assert decoded == event
    assert decoded.occurred_at.utcoffset() == timedelta(hours=-8)


def test_wire_form_is_one_compact_json_object_with_string_ids_and_offset_datetimes() -> None:
    event = conversation_ended()

    raw = encode_event(event)
    record = orjson.loads(raw)

    assert isinstance(raw, bytes)
    assert b"\n" not in raw
    assert record["id"] == str(event.id)
    assert record["type"] == "conversation.ended"
    assert record["v"] == 2
    assert record["occurred_at"] == "2026-11-18T08:41:51.250000-08:00"
    assert datetime.fromisoformat(record["recorded_at"]) == event.recorded_at
    assert record["data"]["turns"][1]["tool_calls"][0]["arguments"] == {"q": "ünïcode", "n": 3}
    assert record["causation_id"] is None
    assert "topic" not in record


def test_utc_datetimes_are_written_with_an_offset_designator() -> None:
    event = conversation_ended().model_copy(
        update={"recorded_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    )

    record = orjson.loads(encode_event(event))

    assert record["recorded_at"] == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize("raw_type", [bytes, bytes.decode, bytearray, memoryview, orjson.loads])
def test_decode_accepts_bytes_text_buffers_and_parsed_dicts(raw_type: Any) -> None:
    event = conversation_ended()

    assert decode_event(raw_type(encode_event(event))) == event


def test_decode_does_not_modify_a_dict_argument() -> None:
    for record in (
        orjson.loads(encode_event(conversation_ended())),
        example("conversation.ended", 1),
    ):
        original = copy.deepcopy(record)

        decode_event(record)

        assert record == original


# ---------------------------------------------------------------------- upcasting


def test_conversation_ended_v1_is_upcast_to_v2_on_read() -> None:
    record = example("conversation.ended", 1)
    record["data"]["turns"] = [
        {"role": "user", "message": "hello", "time_in_call_secs": 1.2345, "tool_calls": None},
        {"role": "agent", "message": None, "time_in_call_secs": 2},
        {
            "role": "agent",
            "message": "done",
            "time_in_call_secs": 3.0,
            "tool_calls": [{"name": "book", "arguments": {"day": "mon"}, "result": None}],
        },
    ]

    event = decode_event(orjson.dumps(record))

    assert isinstance(event, ConversationEnded)
    assert event.v == 2
    assert event.data.turns == (
        Turn(role="user", text="hello", offset_ms=1234, tool_calls=()),
        Turn(role="agent", text="", offset_ms=2000, tool_calls=()),
        Turn(
            role="agent",
            text="done",
            offset_ms=3000,
            tool_calls=(ToolCall(name="book", arguments={"day": "mon"}, result=None),),
        ),
    )


def test_upcast_event_is_written_back_at_the_latest_version() -> None:
    event = decode_event(example("conversation.ended", 1))

    record = orjson.loads(encode_event(event))

    assert record["v"] == 2
    assert "message" not in record["data"]["turns"][0]
    assert decode_event(encode_event(event)) == event


def test_broken_v1_turn_fails_validation_with_the_field_path() -> None:
    record = example("conversation.ended", 1)
    del record["data"]["turns"][1]["message"]
    record["data"]["turns"][2]["time_in_call_secs"] = "soon"

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(record)

    locations = {error["loc"] for error in excinfo.value.errors}
    assert locations == {("data", "turns", 1, "text"), ("data", "turns", 2, "offset_ms")}
    assert excinfo.value.version == 1  # the version that was read, not the one upcast to


def test_failing_upcaster_is_an_invalid_event(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_upcaster(data: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("turns")

    monkeypatch.setitem(envelope_module._UPCASTERS, ("conversation.ended", 1), broken_upcaster)

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(example("conversation.ended", 1))

    assert excinfo.value.code == "upcast_failed"
    assert excinfo.value.event_type == "conversation.ended"


def test_old_version_with_a_non_object_payload_is_an_invalid_event() -> None:
    record = example("conversation.ended", 1)
    record["data"] = ["not", "an", "object"]

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(record)

    assert [error["loc"] for error in excinfo.value.errors] == [("data",)]


# ------------------------------------------------------------------------- errors


def test_decode_errors_share_a_base_that_is_a_value_error() -> None:
    for error in (MalformedEvent, UnknownEventType, InvalidEvent):
        assert issubclass(error, EventDecodeError)
    assert issubclass(EventDecodeError, ValueError)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "not_json"),
        (b"", "not_json"),
        ("\ud800", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"conversation.ended"', "not_an_object"),
        (b"null", "not_an_object"),
        (b'{"v": 1, "data": {}}', "missing_type"),
        (b'{"type": null, "v": 1}', "missing_type"),
        (b'{"type": ["memory.asserted"], "v": 1}', "missing_type"),
        (b'{"type": "memory.asserted"}', "missing_version"),
        (b'{"type": "memory.asserted", "v": "1"}', "missing_version"),
        (b'{"type": "memory.asserted", "v": 1.0}', "missing_version"),
        (b'{"type": "memory.asserted", "v": true}', "missing_version"),
    ],
)
def test_record_that_is_not_an_event_object_is_malformed(raw: bytes | str, code: str) -> None:
    with pytest.raises(MalformedEvent) as excinfo:
        decode_event(raw)

    assert excinfo.value.code == code


def test_unknown_type_is_an_unknown_event_type() -> None:
    record = example("memory.asserted", 1)
    record["type"] = "memory.imagined"

    with pytest.raises(UnknownEventType) as excinfo:
        decode_event(record)

    assert excinfo.value.code == "unknown_type"
    assert excinfo.value.event_type == "memory.imagined"
    assert excinfo.value.event_id == record["id"]


@pytest.mark.parametrize(("event_type", "v"), [("conversation.ended", 3), ("memory.asserted", 2)])
def test_future_version_is_an_unknown_event_type(event_type: str, v: int) -> None:
    record = example(event_type, v - 1)
    record["v"] = v

    with pytest.raises(UnknownEventType) as excinfo:
        decode_event(orjson.dumps(record))

    assert excinfo.value.code == "future_version"
    assert (excinfo.value.event_type, excinfo.value.version) == (event_type, v)


@pytest.mark.parametrize("v", [0, -1])
def test_version_below_the_first_is_an_unknown_event_type(v: int) -> None:
    record = example("conversation.ended", 1)
    record["v"] = v

    with pytest.raises(UnknownEventType) as excinfo:
        decode_event(record)

    assert excinfo.value.code == "unknown_version"


def test_invalid_content_is_an_invalid_event_listing_every_field_path() -> None:
    record = example("conversation.ended", 2)
    record["tenant"] = "Not A Slug"
    record["data"]["turns"][3]["offset_ms"] = -5
    record["data"]["turns"][0]["role"] = "narrator"
    record["data"]["surprise"] = True

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(orjson.dumps(record))

    error = excinfo.value
    assert error.code == "invalid_event"
    assert {e["loc"] for e in error.errors} == {
        ("tenant",),
        ("data", "turns", 3, "offset_ms"),
        ("data", "turns", 0, "role"),
        ("data", "surprise"),
    }
    assert {e["type"] for e in error.errors} == {
        "string_pattern_mismatch",
        "greater_than_equal",
        "literal_error",
        "extra_forbidden",
    }
    assert all(set(e) == {"loc", "msg", "type"} for e in error.errors)
    assert "data.turns.3.offset_ms" in str(error)
    assert (error.event_type, error.version, error.event_id) == (
        "conversation.ended",
        2,
        record["id"],
    )


def test_subject_of_another_tenant_is_an_invalid_event() -> None:
    record = example("memory.asserted", 1)
    record["subject"] = "northwind/usr_1"

    with pytest.raises(InvalidEvent, match="subject"):
        decode_event(record)


def test_timezone_naive_datetime_on_the_wire_is_an_invalid_event() -> None:
    record = example("memory.asserted", 1)
    record["occurred_at"] = "2026-11-19T10:20:00"

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(record)

    assert [e["loc"] for e in excinfo.value.errors] == [("occurred_at",)]


def test_invalid_event_error_does_not_echo_field_values() -> None:
    record = example("memory.asserted", 1)
    secret = "Has a secret diagnosis"
    record["data"]["content"] = secret
    record["data"]["sector"] = "gossip"

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(record)

    assert secret not in str(excinfo.value)
    assert secret not in repr(excinfo.value.errors)


def test_missing_subject_is_an_invalid_event_not_a_codec_failure() -> None:
    record = example("memory.asserted", 1)
    del record["subject"]

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(record)

    assert [e["loc"] for e in excinfo.value.errors] == [("subject",)]


def test_long_error_lists_are_shortened_in_the_message_but_kept_whole() -> None:
    record = example("conversation.ended", 2)
    for turn in record["data"]["turns"]:
        turn["offset_ms"] = -1

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(record)

    assert len(excinfo.value.errors) == len(record["data"]["turns"])
    assert "more" in str(excinfo.value)


def test_decode_errors_survive_pickling_with_their_details() -> None:
    record = example("conversation.ended", 2)
    record["data"]["turns"][0]["offset_ms"] = -1
    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(record)

    restored = pickle.loads(pickle.dumps(excinfo.value))

    assert type(restored) is InvalidEvent
    assert (restored.code, restored.errors, str(restored)) == (
        excinfo.value.code,
        excinfo.value.errors,
        str(excinfo.value),
    )
    assert restored.event_id == record["id"]


def test_decoded_ids_are_uuids() -> None:
    event = latest_example("memory.retracted")

    assert isinstance(event.id, uuid.UUID)
    assert isinstance(event.data.memory_id, uuid.UUID)  # type: ignore[attr-defined]
