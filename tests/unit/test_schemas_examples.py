"""Every stored example of every version still decodes: old versions are never rewritten.

``tests/unit/schemas_examples/<type>.v<N>.json`` holds one realistic record per
type and version as it was written to the log. When a type gets a new version,
keep the old example and add one for the new version.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from schemas import (
    ConversationEnded,
    ToolCall,
    Turn,
    decode_event,
    encode_event,
    event_class,
    readable_versions,
    registered_types,
)

EXAMPLES = Path(__file__).parent / "schemas_examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))
EXAMPLE_NAME = re.compile(r"^(?P<type>[a-z_]+(?:\.[a-z_]+)+)\.v(?P<v>[1-9][0-9]*)\.json$")


def test_example_directory_is_not_empty() -> None:
    assert EXAMPLE_FILES, f"no examples in {EXAMPLES}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_stored_example_still_decodes(path: Path) -> None:
    match = EXAMPLE_NAME.match(path.name)
    assert match, f"{path.name} is not named <type>.v<N>.json"
    record = orjson.loads(path.read_bytes())
    assert (record["type"], record["v"]) == (match["type"], int(match["v"])), (
        f"{path.name} holds a {record['type']} v{record['v']} record"
    )

    event = decode_event(path.read_bytes())

    cls = event_class(match["type"])
    assert type(event) is cls
    assert event.v == cls.model_fields["v"].default
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize(("event_type", "v"), registered_types(), ids=str)
def test_every_readable_version_of_every_type_has_an_example(event_type: str, v: int) -> None:
    missing = [
        f"{event_type}.v{version}.json"
        for version in readable_versions(event_type)
        if not (EXAMPLES / f"{event_type}.v{version}.json").exists()
    ]

    assert not missing, f"add stored examples {missing} to {EXAMPLES}"


def test_conversation_ended_v1_example_reads_as_v2() -> None:
    event = decode_event((EXAMPLES / "conversation.ended.v1.json").read_bytes())

    assert isinstance(event, ConversationEnded)
    assert (event.type, event.v) == ("conversation.ended", 2)
    turns = event.data.turns
    assert [turn.role for turn in turns] == ["agent", "user", "agent", "agent", "user"]
    assert turns[0] == Turn(
        role="agent",
        text="Hello, this is Acme Dental. How can I help you today?",
        offset_ms=0,
        tool_calls=(),
    )
    # time_in_call_secs 4.37 -> 4370 ms; 9.0015 -> 9002 ms (rounded, not truncated); 17 -> 17000.
    assert [turn.offset_ms for turn in turns] == [0, 4370, 9002, 11500, 17000]
    assert turns[1].text == "Hi, I'm Maria. My new crown feels a bit high when I bite down."
    assert turns[1].tool_calls == ()  # v1 omitted tool_calls
    assert turns[0].tool_calls == ()  # v1 wrote null
    assert turns[2].text == ""  # v1 wrote a null message for a tool-only turn
    assert turns[2].tool_calls == (
        ToolCall(
            name="book_appointment",
            arguments={"patient_phone": "+14155550123", "reason": "crown adjustment"},
            result='{"id": "apt_4410", "starts_at": "2026-10-05T10:00:00+02:00"}',
        ),
    )
    # Everything outside the turns is carried over unchanged.
    assert event.data.conversation_id == "conv_01j9b2k7m4n8p3q6r5s1t0v9w2"
    assert event.data.started_at == datetime(2026, 10, 2, 7, 13, 20, tzinfo=UTC)
    assert event.data.duration_secs == 144.0
    assert event.data.analysis is not None
    assert event.data.analysis.title == "Crown adjustment booked"
    assert event.source.platform == "elevenlabs"
