"""The envelope's invariants, the event registry and event ids."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
import pytest
from pydantic import ValidationError

from schemas import (
    EVENT_TYPES,
    LOGICAL_TOPICS,
    CallSignalled,
    ContextPrefetched,
    ConversationEnded,
    ConversationEndedData,
    ConversationFailed,
    ConversationStarted,
    ConversationStartedData,
    EmbeddingComputed,
    Event,
    EventData,
    InvalidEvent,
    MemoryAsserted,
    MemoryAssertedData,
    MemoryExtracted,
    MemoryReinforced,
    MemoryRetracted,
    MemorySuperseded,
    PassagesEmbedded,
    Source,
    SummaryGenerated,
    Turn,
    TurnSaid,
    UnknownEventType,
    UserForgotten,
    decode_event,
    derived_event_id,
    event_class,
    new_event_id,
    readable_versions,
    registered_types,
    tenant_event_id,
    upcaster_for,
    upcasts_from,
    utc_now,
)

OCCURRED = datetime(2026, 11, 18, 16, 42, 7, tzinfo=UTC)


def memory_asserted(**overrides: Any) -> dict[str, Any]:
    """Constructor arguments of a valid memory.asserted event, with ``overrides``."""
    fields: dict[str, Any] = {
        "id": new_event_id(),
        "type": "memory.asserted",
        "v": 1,
        "tenant": "acme",
        "subject": "acme/usr_1",
        "occurred_at": OCCURRED,
        "recorded_at": OCCURRED + timedelta(seconds=1),
        "source": Source(platform="api"),
        "data": MemoryAssertedData(
            memory_id=uuid.uuid4(), content="Allergic to penicillin.", sector="semantic"
        ),
    }
    fields.update(overrides)
    return fields


def error_locations(exc: ValidationError) -> set[tuple[int | str, ...]]:
    return {tuple(error["loc"]) for error in exc.errors()}


# ------------------------------------------------------------------------ envelope


def test_valid_event_builds_with_optional_envelope_fields_defaulting_to_none() -> None:
    event = MemoryAsserted(**memory_asserted())

    assert event.correlation_id is None
    assert event.causation_id is None
    assert event.data.salience == 0.5


def test_events_are_frozen() -> None:
    event = MemoryAsserted(**memory_asserted())

    with pytest.raises(ValidationError, match="frozen"):
        event.tenant = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        event.data.content = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        event.source.platform = "vapi"  # type: ignore[misc]


def test_extra_envelope_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        MemoryAsserted(**memory_asserted(priority="high"))

    assert error_locations(excinfo.value) == {("priority",)}


def test_extra_payload_field_is_rejected() -> None:
    data = {"memory_id": str(uuid.uuid4()), "content": "x", "sector": "semantic", "mood": "ok"}

    with pytest.raises(ValidationError) as excinfo:
        MemoryAsserted(**memory_asserted(data=data))

    assert error_locations(excinfo.value) == {("data", "mood")}


def test_extra_source_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        MemoryAsserted(**memory_asserted(source={"platform": "api", "region": "eu"}))

    assert error_locations(excinfo.value) == {("source", "region")}


@pytest.mark.parametrize(
    "subject",
    ["other/usr_1", "acme/", "acme", "acmeX/usr_1", "ACME/usr_1", "", "/usr_1", "acme-eu/usr_1"],
)
def test_subject_must_be_a_user_of_the_tenant(subject: str) -> None:
    with pytest.raises(ValidationError, match="subject"):
        MemoryAsserted(**memory_asserted(subject=subject))


def test_subject_user_part_may_contain_any_characters_after_the_tenant() -> None:
    event = MemoryAsserted(**memory_asserted(subject="acme/team/usr 1"))

    assert event.subject == "acme/team/usr 1"


@pytest.mark.parametrize("tenant", ["", "Acme", "-acme", "acme corp", "a" * 64, "acme/eu"])
def test_tenant_must_be_a_lowercase_slug(tenant: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        MemoryAsserted(**memory_asserted(tenant=tenant, subject=f"{tenant}/usr_1"))

    assert ("tenant",) in error_locations(excinfo.value)


@pytest.mark.parametrize("tenant", ["a", "acme", "acme-dental", "acme_2", "0", "a" * 63])
def test_tenant_slugs_up_to_63_characters_are_accepted(tenant: str) -> None:
    assert MemoryAsserted(**memory_asserted(tenant=tenant, subject=f"{tenant}/u")).tenant == tenant


@pytest.mark.parametrize("field", ["occurred_at", "recorded_at"])
def test_timezone_naive_envelope_datetimes_are_rejected(field: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        MemoryAsserted(**memory_asserted(**{field: datetime(2026, 11, 18, 16, 42, 7)}))

    assert error_locations(excinfo.value) == {(field,)}


def test_timezone_naive_payload_datetime_is_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        ConversationEndedData(
            conversation_id="conv_1", started_at=datetime(2026, 11, 18, 16, 0), status="done"
        )

    assert error_locations(excinfo.value) == {("started_at",)}


def test_occurred_at_is_required() -> None:
    fields = memory_asserted()
    del fields["occurred_at"]

    with pytest.raises(ValidationError) as excinfo:
        MemoryAsserted(**fields)

    assert error_locations(excinfo.value) == {("occurred_at",)}


def test_event_class_rejects_another_type_or_version() -> None:
    with pytest.raises(ValidationError) as excinfo:
        MemoryAsserted(**memory_asserted(type="memory.retracted", v=2))

    assert error_locations(excinfo.value) == {("type",), ("v",)}


@pytest.mark.parametrize("salience", [-0.01, 1.01, float("nan"), float("inf")])
def test_salience_must_be_a_finite_number_between_0_and_1(salience: float) -> None:
    with pytest.raises(ValidationError):
        MemoryAssertedData(
            memory_id=uuid.uuid4(), content="x", sector="semantic", salience=salience
        )


@pytest.mark.parametrize(
    ("salience", "kept"), [(1e-320, 0.0), (5e-324, 0.0), (1e-40, 1e-40), (0.3, 0.3), (0.0, 0.0)]
)
def test_a_salience_below_what_a_real_holds_is_zero(salience: float, kept: float) -> None:
    """The memories read model keeps salience as ``real``, where 1e-320 underflows and
    PostgreSQL refuses the row (the event was dead-lettered). Asserted or extracted
    (an LLM's number), it is the 0 a ``real`` would hold; others are kept as they are."""
    asserted = MemoryAssertedData(
        memory_id=uuid.uuid4(), content="x", sector="semantic", salience=salience
    )
    extracted = MemoryExtracted.model_validate(
        {
            "type": "memory.extracted", "v": 1, "tenant": "acme", "subject": "acme/usr_1",
            "id": new_event_id(), "occurred_at": OCCURRED, "recorded_at": OCCURRED,
            "source": {"platform": "memstream"},
            "data": {"memory_id": uuid.uuid4(), "content": "x", "sector": "semantic",
                     "salience": salience, "kind": "fact", "observed_at": OCCURRED,
                     "extractor": "llm:m", "extractor_version": "1",
                     "provenance": {"conversation_id": "c-1", "turns": [0]}},
        }
    )  # fmt: skip
    assert asserted.salience == extracted.data.salience == kept


def test_turn_offset_cannot_be_negative() -> None:
    with pytest.raises(ValidationError):
        Turn(role="user", text="hi", offset_ms=-1)


@pytest.mark.parametrize(
    "phone", ["4155550123", "+0415555", "+1 415 555 0123", "+1234567890123456"]
)
def test_caller_phone_must_be_e164(phone: str) -> None:
    with pytest.raises(ValidationError):
        ConversationStartedData(conversation_id="c1", caller_phone=phone)


# ------------------------------------------------------- what no read model can store


def conversation_ended(**data: Any) -> dict[str, Any]:
    """The wire form of a valid conversation.ended, its ``data`` updated with ``data``."""
    return {
        "id": str(new_event_id()), "type": "conversation.ended", "v": 2, "tenant": "acme",
        "subject": "acme/usr_1", "occurred_at": "2026-11-18T16:42:07Z",
        "recorded_at": "2026-11-18T16:42:09Z", "source": {"platform": "api"},
        "data": {"conversation_id": "call-1", "started_at": "2026-11-18T16:38:51Z",
                 "status": "done", "metadata": {"cost": {"total": 0.12}},
                 "turns": [{"role": "user", "text": "hi", "offset_ms": 0}], **data},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"subject": "acme/usr\x00_1"}, "subject"),
        ({"source": Source(platform="api", event_id="e\x00")}, "source.event_id"),
        (
            {
                "data": MemoryAssertedData(
                    memory_id=uuid.uuid4(), content="a\x00", sector="semantic"
                )
            },
            "data.content",
        ),
    ],
)
def test_a_nul_character_anywhere_in_an_event_is_refused(
    overrides: dict[str, Any], where: str
) -> None:
    """PostgreSQL text holds no NUL: an event with one would fail in every projection."""
    with pytest.raises(ValidationError, match=rf"{where} holds a NUL character"):
        MemoryAsserted(**memory_asserted(**overrides))


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"turns": [{"role": "user", "text": "a\x00", "offset_ms": 0}]}, "data.turns[0].text"),
        ({"metadata": {"cost": {"no\x00te": 1}}}, "a key of data.metadata.cost"),
        ({"metadata": {"k": [1, ["\x00"]]}}, "data.metadata.k[1][0]"),
        ({"status": "\x00"}, "data.status"),
    ],
)  # fmt: skip
def test_a_nul_character_in_an_event_from_outside_is_refused_with_where_it_is(
    data: dict[str, Any], where: str
) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(f"{where} holds a NUL character")):
        decode_event(conversation_ended(**data))


def test_a_record_read_from_the_log_is_not_searched_for_nul_again() -> None:
    """Checked when it was appended; walking it again would slow every rebuild down."""
    record = conversation_ended(status="\x00")
    assert decode_event(orjson.dumps(record)).data.status == "\x00"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "instant",
    [
        "1969-12-31T23:59:59Z",
        "2200-01-01T00:00:01Z",
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: converting it overflows
        "9999-12-31T23:59:59-14:00",  # after 9999 in UTC: psycopg cannot read it back
    ],
)
@pytest.mark.parametrize(
    "field", ["occurred_at", "recorded_at", "data.started_at", "data.ended_at"]
)
def test_a_time_outside_1970_to_2200_is_refused(field: str, instant: str) -> None:
    record = conversation_ended()
    if field.startswith("data."):
        record["data"][field.removeprefix("data.")] = instant
    else:
        record[field] = instant
    with pytest.raises(InvalidEvent, match="between 1970-01-01T00:00:00Z and 2200-01-01"):
        decode_event(record)


def test_the_edges_of_1970_to_2200_are_accepted() -> None:
    event = decode_event(
        conversation_ended(started_at="1970-01-01T00:00:00Z", ended_at="2200-01-01T00:00:00Z")
    )
    assert event.data.ended_at == datetime(2200, 1, 1, tzinfo=UTC)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"turns": [{"role": "user", "text": "hi", "offset_ms": True}]}, "offset_ms"),
        ({"turns": [{"role": "user", "text": "hi", "offset_ms": 1.5}]}, "offset_ms"),
        ({"turns": [{"role": "user", "text": "hi", "offset_ms": 2**62}]}, "offset_ms"),
        ({"turns": [{"role": "user", "text": "hi", "offset_ms": 7 * 86_400_000 + 1}]}, "offset_ms"),
        ({"duration_secs": 1e308}, "duration_secs"),
        ({"duration_secs": 7 * 86_400 + 1}, "duration_secs"),
    ],
)  # fmt: skip
def test_offsets_and_durations_are_those_of_a_call(data: dict[str, Any], field: str) -> None:
    """No call lasts a week (the webhooks refuse the same); an offset is an integer, not a
    boolean, and fits the read models' 32-bit column."""
    with pytest.raises(InvalidEvent, match=field):
        decode_event(conversation_ended(**data))


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(subject="acme/" + "u" * 257),
        lambda r: r.update(subject="acme/anonymous-" + "c" * 257),
        lambda r: r.update(correlation_id="c" * 257),
        lambda r: r["source"].update(event_id="e" * 257),
        lambda r: r["source"].update(agent_id="a" * 257),
        lambda r: r["source"].update(platform="p" * 257),
        lambda r: r["data"].update(conversation_id="c" * 257),
    ],
)
def test_an_id_over_256_characters_is_refused(change: Any) -> None:
    """Ids are indexed, and a btree entry holds about 2,700 bytes."""
    record = conversation_ended()
    change(record)
    with pytest.raises(InvalidEvent):
        decode_event(record)


def test_ids_of_256_characters_and_an_anonymous_subject_of_one_are_accepted() -> None:
    record = conversation_ended(conversation_id="c" * 256)
    record.update(subject="acme/anonymous-" + "c" * 256, correlation_id="c" * 256)
    record["source"].update(event_id="e" * 256, agent_id="a" * 256)
    assert decode_event(record).correlation_id == "c" * 256
    record["subject"] = "acme/" + "u" * 256
    assert decode_event(record).subject == "acme/" + "u" * 256


# -------------------------------------------------------------------------- create


def test_create_fills_id_type_version_and_recorded_at() -> None:
    before = utc_now()
    event = MemoryAsserted.create(
        tenant="acme",
        subject="acme/usr_1",
        data={"memory_id": str(uuid.uuid4()), "content": "Likes jazz.", "sector": "emotional"},
        source={"platform": "api"},
        occurred_at=OCCURRED,
    )
    after = utc_now()

    assert (event.type, event.v) == ("memory.asserted", 1)
    assert event.id.version == 7
    assert before <= event.recorded_at <= after
    assert isinstance(event.data, MemoryAssertedData)
    assert event.source == Source(platform="api")


def test_create_keeps_given_id_recorded_at_and_links() -> None:
    event_id = derived_event_id("api", "memory.asserted", "req-1")
    cause = new_event_id()
    recorded = OCCURRED + timedelta(minutes=5)

    event = ConversationFailed.create(
        tenant="acme",
        subject="acme/usr_1",
        data={"conversation_id": "call_1", "reason": "busy"},
        source=Source(platform="vapi", event_id="call_1"),
        occurred_at=OCCURRED,
        id=event_id,
        recorded_at=recorded,
        correlation_id="call_1",
        causation_id=cause,
    )

    assert (event.id, event.recorded_at) == (event_id, recorded)
    assert (event.correlation_id, event.causation_id) == ("call_1", cause)


def test_create_validates_like_the_constructor() -> None:
    with pytest.raises(ValidationError, match="subject"):
        UserForgotten.create(
            tenant="acme", subject="other/usr_1", data={}, source={"platform": "api"},
            occurred_at=OCCURRED,
        )  # fmt: skip


def test_create_on_the_envelope_base_is_refused() -> None:
    with pytest.raises(TypeError, match="not a registered event type"):
        Event.create(
            tenant="acme", subject="acme/u", data=EventData(), source={"platform": "api"},
            occurred_at=OCCURRED,
        )  # fmt: skip


# ------------------------------------------------------------------------ registry

# docs/architecture.md, topics: everything that comes in from platforms or the API.
EXPECTED_TYPES = {
    ("conversation.started", 1): (ConversationStarted, "conversations"),
    ("conversation.ended", 2): (ConversationEnded, "conversations"),
    ("conversation.failed", 1): (ConversationFailed, "conversations"),
    ("memory.asserted", 1): (MemoryAsserted, "conversations"),
    ("memory.retracted", 1): (MemoryRetracted, "conversations"),
    ("user.forgotten", 1): (UserForgotten, "conversations"),
    ("memory.extracted", 1): (MemoryExtracted, "memories"),
    ("memory.reinforced", 1): (MemoryReinforced, "memories"),
    ("memory.superseded", 1): (MemorySuperseded, "memories"),
    ("embedding.computed", 1): (EmbeddingComputed, "embeddings"),
    ("passages.embedded", 1): (PassagesEmbedded, "embeddings"),
    ("summary.generated", 1): (SummaryGenerated, "summaries"),
    ("turn.said", 1): (TurnSaid, "live"),
    ("call.signalled", 1): (CallSignalled, "live"),
    ("context.prefetched", 1): (ContextPrefetched, "live"),
}


def test_registry_holds_every_event_type_at_its_latest_version() -> None:
    assert set(registered_types()) == set(EXPECTED_TYPES)
    assert registered_types() == sorted(registered_types())


@pytest.mark.parametrize(("key", "expected"), EXPECTED_TYPES.items(), ids=str)
def test_event_class_and_topic_of_each_type(
    key: tuple[str, int], expected: tuple[type[Event], str]
) -> None:
    event_type, v = key
    cls, topic = expected

    assert event_class(event_type) is cls
    assert event_class(event_type, v) is cls
    assert EVENT_TYPES[event_type] is cls
    assert cls.topic == topic
    assert topic in LOGICAL_TOPICS


def test_event_types_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        EVENT_TYPES["memory.asserted"] = MemoryAsserted  # type: ignore[index]


def test_event_class_of_unknown_type_is_an_unknown_event_type() -> None:
    with pytest.raises(UnknownEventType) as excinfo:
        event_class("memory.imagined")

    assert excinfo.value.code == "unknown_type"


@pytest.mark.parametrize(("v", "code"), [(1, "unknown_version"), (3, "future_version")])
def test_event_class_of_a_version_that_is_not_the_latest_is_refused(v: int, code: str) -> None:
    with pytest.raises(UnknownEventType) as excinfo:
        event_class("conversation.ended", v)

    assert excinfo.value.code == code


def test_old_versions_are_readable_through_registered_upcasters() -> None:
    assert readable_versions("conversation.ended") == [1, 2]
    assert readable_versions("memory.asserted") == [1]
    assert upcaster_for("conversation.ended", 1) is ConversationEnded.upcast_v1
    assert upcaster_for("conversation.ended", 2) is None


def test_second_class_for_a_registered_type_is_refused() -> None:
    with pytest.raises(TypeError, match="already registered"):

        class MemoryAssertedAgain(Event):
            type: Literal["memory.asserted"] = "memory.asserted"
            v: Literal[1] = 1
            data: MemoryAssertedData
            topic: ClassVar[str] = "conversations"


def test_new_version_without_upcaster_from_every_older_version_is_refused() -> None:
    with pytest.raises(TypeError, match="upcaster"):

        class Imagined(Event):
            type: Literal["memory.imagined"] = "memory.imagined"
            v: Literal[3] = 3
            data: MemoryAssertedData
            topic: ClassVar[str] = "memories"

            @staticmethod
            @upcasts_from(2)
            def upcast_v2(data: dict[str, Any]) -> dict[str, Any]:
                return data

    assert "memory.imagined" not in EVENT_TYPES


def test_upcaster_must_be_a_static_method() -> None:
    with pytest.raises(TypeError, match="staticmethod"):

        class Imagined(Event):
            type: Literal["memory.imagined"] = "memory.imagined"
            v: Literal[2] = 2
            data: MemoryAssertedData
            topic: ClassVar[str] = "memories"

            @upcasts_from(1)
            def upcast_v1(self, data: dict[str, Any]) -> dict[str, Any]:
                return data


def test_event_type_on_an_unknown_topic_is_refused() -> None:
    with pytest.raises(TypeError, match="topic"):

        class Imagined(Event):
            type: Literal["memory.imagined"] = "memory.imagined"
            v: Literal[1] = 1
            data: MemoryAssertedData
            topic: ClassVar[str] = "memstream.memories"

    assert "memory.imagined" not in EVENT_TYPES


def test_event_type_must_narrow_type_and_version_to_literals() -> None:
    with pytest.raises(TypeError, match="Literal"):

        class Imagined(Event):
            v: Literal[1] = 1
            data: MemoryAssertedData
            topic: ClassVar[str] = "memories"


# ------------------------------------------------------------------------------ ids


def test_new_event_id_is_a_uuid_version_7_with_the_rfc_variant() -> None:
    event_id = new_event_id()

    assert event_id.version == 7
    assert event_id.variant == uuid.RFC_4122


def test_new_event_id_carries_the_current_unix_millisecond() -> None:
    before_ms = time.time_ns() // 1_000_000
    event_id = new_event_id()
    after_ms = time.time_ns() // 1_000_000

    embedded_ms = event_id.int >> 80
    assert before_ms - 1000 <= embedded_ms <= after_ms + 1000
    assert abs(embedded_ms - before_ms) < 1000


def test_new_event_ids_are_unique_and_strictly_increasing_within_a_process() -> None:
    ids = [new_event_id() for _ in range(20_000)]

    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)  # text order too


def test_new_event_ids_differ_in_their_random_bits_across_milliseconds() -> None:
    first = new_event_id()
    time.sleep(0.002)
    second = new_event_id()

    random_bits = (1 << 62) - 1
    assert (first.int >> 80) < (second.int >> 80)
    assert (first.int & random_bits) != (second.int & random_bits)


def test_derived_event_id_is_stable_for_the_same_parts() -> None:
    parts = ("elevenlabs", "conversation.ended", "conv_01jcx4w8v2e9f7ak3m5n6p8q0r")

    assert derived_event_id(*parts) == derived_event_id(*parts)
    assert derived_event_id(*parts).version == 5


def test_derived_event_id_never_changes_across_releases() -> None:
    # Ids already in the log were derived with this namespace and separator; a
    # change would make every redelivered webhook look new.
    pinned_namespace = uuid.UUID("6f1c2b0e-8d4a-5e37-9c51-3a7d2e9b4f60")

    assert derived_event_id("elevenlabs", "conversation.ended", "conv_1") == uuid.uuid5(
        pinned_namespace, "elevenlabs\x1fconversation.ended\x1fconv_1"
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("elevenlabs", "conversation.ended", "c1"), ("elevenlabs", "conversation.ended", "c2")),
        (("elevenlabs", "conversation.ended", "c1"), ("vapi", "conversation.ended", "c1")),
        (("elevenlabs", "conversation.ended", "c1"), ("elevenlabs", "conversation.started", "c1")),
        (("ab", "c"), ("a", "bc")),
        (("a",), ("a", "")),
    ],
)
def test_derived_event_ids_differ_for_different_parts(
    left: tuple[str, ...], right: tuple[str, ...]
) -> None:
    assert derived_event_id(*left) != derived_event_id(*right)


def test_derived_event_id_refuses_parts_containing_the_separator() -> None:
    with pytest.raises(ValueError, match="separator"):
        derived_event_id("a\x1fb")


def test_derived_event_id_refuses_no_parts_and_non_strings() -> None:
    with pytest.raises(ValueError):
        derived_event_id()
    with pytest.raises(TypeError):
        derived_event_id("conversation", 42)  # type: ignore[arg-type]


def test_tenant_event_id_puts_the_tenant_first_in_the_name() -> None:
    # Pinned like derived_event_id: ids of this scheme are in the log from now on.
    pinned_namespace = uuid.UUID("6f1c2b0e-8d4a-5e37-9c51-3a7d2e9b4f60")

    assert tenant_event_id("acme", "vapi", "end-of-call-report", "call_1") == uuid.uuid5(
        pinned_namespace, "acme\x1fvapi\x1fend-of-call-report\x1fcall_1"
    )


def test_tenant_event_ids_of_one_upstream_key_differ_by_tenant_and_from_the_earlier_id() -> None:
    key = ("elevenlabs", "post_call_transcription", "conv_1")

    staging, production = tenant_event_id("acme-staging", *key), tenant_event_id("acme", *key)
    assert staging != production
    assert derived_event_id(*key) not in (staging, production)


@pytest.mark.parametrize("tenant", ["", "Acme", "memory.asserted", "acme\n", "a/b"])
def test_tenant_event_id_refuses_what_is_not_a_tenant(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        tenant_event_id(tenant, "vapi", "end-of-call-report", "call_1")


def test_tenant_event_id_needs_an_upstream_key() -> None:
    with pytest.raises(ValueError, match="upstream key"):
        tenant_event_id("acme")


def test_utc_now_is_timezone_aware_utc() -> None:
    now = utc_now()

    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=1)


# ------------------------------------------------------------------ when it began


def test_an_event_began_when_its_call_did_else_at_its_own_time() -> None:
    examples = Path(__file__).parent / "schemas_examples"

    def example(name: str) -> Event:
        return decode_event((examples / f"{name}.json").read_bytes())

    ended = example("conversation.ended.v2")
    assert isinstance(ended, ConversationEnded)
    assert ended.began == ended.data.started_at < ended.occurred_at  # it happens at the end
    for name in ("memory.extracted.v1", "memory.reinforced.v1", "memory.superseded.v1"):
        said = example(name)
        assert isinstance(said, MemoryExtracted | MemoryReinforced | MemorySuperseded)
        assert said.began == said.data.observed_at, name
    for name in ("conversation.started.v1", "memory.asserted.v1", "summary.generated.v1"):
        event = example(name)
        assert event.began == event.occurred_at, name
