"""Personal text goes through the one codec on the wire, and only there."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas import (
    Analysis,
    ConversationEnded,
    ConversationEndedData,
    IdentityCodec,
    InvalidEvent,
    MemoryAsserted,
    PersonalDataCodec,
    Source,
    ToolCall,
    Turn,
    decode_event,
    encode_event,
    get_personal_codec,
    set_personal_codec,
)

SUBJECT = "acme/usr_1"
OCCURRED = datetime(2026, 11, 18, 16, 42, 7, tzinfo=UTC)


class SubjectBoundBase64Codec:
    """Reversible stand-in for per-user encryption: the subject is part of the ciphertext."""

    prefix = "enc:"

    def __init__(self) -> None:
        self.encoded: list[tuple[str, str]] = []
        self.decoded: list[tuple[str, str]] = []

    def encode(self, subject: str, value: str) -> str:
        self.encoded.append((subject, value))
        payload = f"{subject}\x00{value}".encode()
        return self.prefix + base64.b64encode(payload).decode("ascii")

    def decode(self, subject: str, value: str) -> str:
        self.decoded.append((subject, value))
        if not value.startswith(self.prefix):
            raise ValueError("not encoded by this codec")
        owner, _, text = base64.b64decode(value[len(self.prefix) :]).decode().partition("\x00")
        if owner != subject:
            raise ValueError("encoded for another user")
        return text


def seal(subject: str, value: str) -> str:
    return SubjectBoundBase64Codec().encode(subject, value)


@pytest.fixture
def codec() -> Iterator[SubjectBoundBase64Codec]:
    codec = SubjectBoundBase64Codec()
    previous = set_personal_codec(codec)
    try:
        yield codec
    finally:
        set_personal_codec(previous)


def conversation() -> ConversationEnded:
    return ConversationEnded.create(
        tenant="acme",
        subject=SUBJECT,
        occurred_at=OCCURRED,
        source=Source(platform="elevenlabs", event_id="conv_1"),
        data=ConversationEndedData(
            conversation_id="conv_1",
            started_at=OCCURRED,
            status="done",
            turns=(
                Turn(role="user", text="My PIN is 4321", offset_ms=0),
                Turn(
                    role="agent",
                    text="Checking your balance",
                    offset_ms=1500,
                    tool_calls=(
                        ToolCall(name="balance", arguments={"account": "A-77"}, result="$12.50"),
                    ),
                ),
            ),
            metadata={"termination_reason": "user hung up"},
            analysis=Analysis(summary="Asked for balance.", title="Balance check"),
        ),
    )


def conversation_with_ids_of(record: dict[str, Any]) -> ConversationEnded:
    event = conversation()
    return event.model_copy(
        update={
            "id": uuid.UUID(record["id"]),
            "recorded_at": datetime.fromisoformat(record["recorded_at"]),
        }
    )


def memory() -> MemoryAsserted:
    return MemoryAsserted.create(
        tenant="acme",
        subject=SUBJECT,
        occurred_at=OCCURRED,
        source={"platform": "api"},
        data={"memory_id": str(uuid.uuid4()), "content": "Lives in Lyon.", "sector": "semantic"},
    )


PERSONAL_TEXTS = ["My PIN is 4321", "Checking your balance", "$12.50", "Asked for balance."]


def test_default_codec_is_the_identity() -> None:
    assert isinstance(get_personal_codec(), IdentityCodec)
    assert isinstance(get_personal_codec(), PersonalDataCodec)


def test_wire_bytes_hold_encoded_personal_text(codec: SubjectBoundBase64Codec) -> None:
    event = conversation()
    record = orjson.loads(encode_event(event))

    data = record["data"]
    # The transcript as a whole: one value (texts, tool calls, their results).
    turns = [turn.model_dump(mode="json") for turn in event.data.turns]
    assert data["turns"] == seal(SUBJECT, orjson.dumps(turns).decode())
    assert data["analysis"]["summary"] == seal(SUBJECT, "Asked for balance.")
    raw = encode_event(conversation())
    for text in PERSONAL_TEXTS:
        assert text.encode() not in raw


def test_non_personal_fields_are_untouched_on_the_wire(codec: SubjectBoundBase64Codec) -> None:
    record = orjson.loads(encode_event(conversation()))

    assert record["subject"] == SUBJECT
    assert record["source"] == {"platform": "elevenlabs", "event_id": "conv_1", "agent_id": None}
    assert record["data"]["conversation_id"] == "conv_1"
    assert record["data"]["status"] == "done"
    assert record["data"]["started_at"] == "2026-11-18T16:42:07Z"
    assert record["data"]["analysis"]["successful"] is None


def test_objects_holding_personal_data_are_encoded_whole_as_json(
    codec: SubjectBoundBase64Codec,
) -> None:
    record = orjson.loads(encode_event(conversation()))

    data = record["data"]
    assert data["metadata"] == seal(SUBJECT, '{"termination_reason":"user hung up"}')
    assert data["analysis"]["title"] == seal(SUBJECT, "Balance check")
    assert data["dynamic_variables"] == {}  # nothing to hide: stays as it is
    assert decode_event(orjson.dumps(record)) == conversation_with_ids_of(record)


def test_objects_stored_before_encoding_still_decode_as_themselves(
    codec: SubjectBoundBase64Codec,
) -> None:
    event = conversation()
    record = orjson.loads(encode_event(event))
    record["data"]["metadata"] = {"termination_reason": "user hung up"}
    record["data"]["turns"] = [turn.model_dump(mode="json") for turn in event.data.turns]

    decoded = decode_event(record)
    assert decoded.data.metadata == {"termination_reason": "user hung up"}
    assert decoded.data.turns == event.data.turns


def test_decoding_from_the_wire_gives_the_plain_text_back(codec: SubjectBoundBase64Codec) -> None:
    event = conversation()

    decoded = decode_event(encode_event(event))

    assert decoded == event
    assert isinstance(decoded, ConversationEnded)
    assert decoded.data.turns[0].text == "My PIN is 4321"
    assert {subject for subject, _ in codec.decoded} == {SUBJECT}
    encoded = " ".join(text for _, text in codec.encoded)
    assert all(text in encoded for text in PERSONAL_TEXTS)
    assert len(codec.decoded) == len(codec.encoded)  # every value came back through it


def test_memory_content_goes_through_the_codec(codec: SubjectBoundBase64Codec) -> None:
    event = memory()

    raw = encode_event(event)

    assert orjson.loads(raw)["data"]["content"] == seal(SUBJECT, "Lives in Lyon.")
    assert decode_event(raw) == event


def test_building_and_dumping_events_in_python_does_not_encode(
    codec: SubjectBoundBase64Codec,
) -> None:
    event = conversation()

    assert event.data.turns[0].text == "My PIN is 4321"
    assert event.model_dump()["data"]["turns"][0]["text"] == "My PIN is 4321"
    assert ConversationEnded.model_validate(event.model_dump()) == event
    assert codec.encoded == codec.decoded == []


def test_codec_is_called_with_the_event_subject(codec: SubjectBoundBase64Codec) -> None:
    record = orjson.loads(encode_event(memory()))
    # Text sealed for one user does not open for another: the subject reaches the codec.
    record["subject"] = "acme/usr_2"

    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(record)

    assert [error["loc"] for error in excinfo.value.errors] == [("data", "content")]


def test_text_the_codec_cannot_decode_is_an_invalid_event(
    codec: SubjectBoundBase64Codec,
) -> None:
    record = orjson.loads(encode_event(memory()))
    record["data"]["content"] = "written before encryption existed"

    with pytest.raises(InvalidEvent):
        decode_event(record)


def test_identity_codec_leaves_wire_text_as_written() -> None:
    event = conversation()

    raw = encode_event(event)

    assert b"My PIN is 4321" in raw
    assert decode_event(raw) == event


def test_set_personal_codec_returns_the_previous_codec() -> None:
    first = SubjectBoundBase64Codec()
    original = set_personal_codec(first)
    try:
        assert set_personal_codec(IdentityCodec()) is first
    finally:
        set_personal_codec(original)
    assert get_personal_codec() is original


def test_object_without_encode_and_decode_is_not_accepted_as_codec() -> None:
    not_a_codec: Any = object()

    with pytest.raises(TypeError):
        set_personal_codec(not_a_codec)
    assert isinstance(get_personal_codec(), IdentityCodec)
