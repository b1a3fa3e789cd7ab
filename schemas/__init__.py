"""memstream's event schemas: the envelope, every event type and version, and the wire format.

This package imports nothing from the rest of memstream; everything else
imports it. Typical use::

    from schemas import ConversationEnded, decode_event, encode_event

    event = ConversationEnded.create(tenant=..., subject=..., data=..., source=..., occurred_at=...)
    raw = encode_event(event)          # bytes for the log
    same = decode_event(raw)           # any stored version, upcast to the latest
    topic = same.topic                 # logical topic, e.g. "conversations"
"""

from schemas.codec import (
    IdentityCodec,
    PersonalDataCodec,
    PersonalText,
    get_personal_codec,
    set_personal_codec,
)
from schemas.envelope import (
    EVENT_TYPES,
    LOGICAL_TOPICS,
    MEMSTREAM_NAMESPACE,
    Event,
    EventData,
    Source,
    Upcaster,
    derived_event_id,
    event_class,
    new_event_id,
    readable_versions,
    registered_types,
    upcaster_for,
    upcasts_from,
    utc_now,
)
from schemas.events import (
    Analysis,
    ConversationEnded,
    ConversationEndedData,
    ConversationFailed,
    ConversationFailedData,
    ConversationStarted,
    ConversationStartedData,
    EmbeddingComputed,
    EmbeddingComputedData,
    MemoryAsserted,
    MemoryAssertedData,
    MemoryExtracted,
    MemoryExtractedData,
    MemoryReinforced,
    MemoryReinforcedData,
    MemoryRetracted,
    MemoryRetractedData,
    MemorySuperseded,
    MemorySupersededData,
    Provenance,
    SummaryGenerated,
    SummaryGeneratedData,
    SummaryInputs,
    ToolCall,
    Turn,
    UserForgotten,
    UserForgottenData,
)
from schemas.exceptions import EventDecodeError, InvalidEvent, MalformedEvent, UnknownEventType
from schemas.wire import decode_event, encode_event

__all__ = [
    "EVENT_TYPES",
    "LOGICAL_TOPICS",
    "MEMSTREAM_NAMESPACE",
    "Analysis",
    "ConversationEnded",
    "ConversationEndedData",
    "ConversationFailed",
    "ConversationFailedData",
    "ConversationStarted",
    "ConversationStartedData",
    "EmbeddingComputed",
    "EmbeddingComputedData",
    "Event",
    "EventData",
    "EventDecodeError",
    "IdentityCodec",
    "InvalidEvent",
    "MalformedEvent",
    "MemoryAsserted",
    "MemoryAssertedData",
    "MemoryExtracted",
    "MemoryExtractedData",
    "MemoryReinforced",
    "MemoryReinforcedData",
    "MemoryRetracted",
    "MemoryRetractedData",
    "MemorySuperseded",
    "MemorySupersededData",
    "PersonalDataCodec",
    "PersonalText",
    "Provenance",
    "Source",
    "SummaryGenerated",
    "SummaryGeneratedData",
    "SummaryInputs",
    "ToolCall",
    "Turn",
    "UnknownEventType",
    "Upcaster",
    "UserForgotten",
    "UserForgottenData",
    "decode_event",
    "derived_event_id",
    "encode_event",
    "event_class",
    "get_personal_codec",
    "new_event_id",
    "readable_versions",
    "registered_types",
    "set_personal_codec",
    "upcaster_for",
    "upcasts_from",
    "utc_now",
]
