"""The single point every personal field passes through on its way to and from the wire.

Erasure in memstream is crypto-shredding (docs/architecture.md, "Personal data and
erasure"): personal fields are encrypted with a key of the subject's own, and erasing the
subject destroys the key. Every personal field is typed :data:`PersonalText` (a string),
:data:`PersonalJSON` (an object) or :data:`PersonalJSONArray` (an array: a transcript),
the last two stored as one value; those types call the process-wide
:class:`PersonalDataCodec`:

- ``encode(subject, text)`` when an event is serialised for the wire
  (:func:`schemas.wire.encode_event`); a :data:`PersonalJSON` object or
  :data:`PersonalJSONArray` array is written as JSON text first, and its stored form (a
  string) replaces it;
- ``decode(subject, text)`` when an event is validated from the wire
  (:func:`schemas.wire.decode_event`); such a string is decoded and parsed back (an
  object or array on the wire is taken as it is), then validated as the field's type. A
  field's own constraints (an E.164 pattern, a minimum length) are checked on the decoded
  value.

An empty value (``""``, ``{}``, ``[]``) holds nothing to hide: it never reaches the
codec, and is stored and read as it is.

The codec runs only when the pydantic (de)serialisation context says
``{"wire": True, "subject": ...}``. Events built in Python code and
``model_dump()`` without that context see plain values, so nothing is encoded twice.

What ``decode`` must do with what it did not write or cannot read:

- a value it did not produce (plain text, written before encryption) comes back as it is;
- a value whose key was destroyed (the subject was erased) comes back as
  :data:`ERASED`; a :data:`PersonalJSON` field then decodes as ``{}``, a
  :data:`PersonalJSONArray` field as ``[]``;
- a value it cannot read otherwise raises ``ValueError``: the decode fails as
  :class:`schemas.exceptions.InvalidEvent`.

A transcript — a field typed :data:`TranscriptJSONArray` (the turns of a call, the vectors
of its passages) — is personal like a :data:`PersonalJSONArray`, and more: a codec that is
also a :class:`PeriodSealingCodec` stores it with ``encode_period(subject, text, began,
"transcripts")``, under a key of the period the call began in as well as the subject's, so
that transcript retention can make it unreadable while the subject's other data stays
(docs/architecture.md, "Retention"). A memory's content (:data:`MemoryText`) and its vector
(:data:`MemoryJSONArray`) are sealed the same way with a key of the second family,
``"memories"``, of the period the memory was first said in (``began``), which memory
retention destroys. Both decode through ``decode`` like any value: past retention, as
:data:`ERASED` (a memory's content reads ``ERASED``, its vector ``[]``), which the
projections skip.

A codec that is also a :class:`SubjectSealingCodec` protects the envelope's subject too:
:func:`schemas.wire.encode_event` stores ``seal_subject(subject)`` instead of the
subject, the record's Kafka key is ``pseudonym(subject)`` (:func:`schemas.wire.event_key`),
and :func:`schemas.wire.decode_event` opens the subject with ``open_subject`` before
anything else. The identity codec (the default) and a codec with only ``encode`` and
``decode`` leave the subject and the key as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar, runtime_checkable

import orjson
from pydantic import (
    AfterValidator,
    BeforeValidator,
    GetJsonSchemaHandler,
    PlainSerializer,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    WrapSerializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = [
    "ERASED",
    "MEMORY_JSON_SCHEMA_KEY",
    "MEMORY_PERIODS",
    "PERSONAL_JSON_SCHEMA_KEY",
    "TRANSCRIPT_JSON_SCHEMA_KEY",
    "TRANSCRIPT_PERIODS",
    "IdentityCodec",
    "MemoryJSONArray",
    "MemoryText",
    "PeriodSealingCodec",
    "PersonalDataCodec",
    "PersonalJSON",
    "PersonalJSONArray",
    "PersonalText",
    "SubjectSealingCodec",
    "TranscriptJSONArray",
    "get_personal_codec",
    "set_personal_codec",
    "subject_sealing_codec",
    "wire_context",
]

#: Marks personal fields in the generated JSON Schemas, so a reader in another
#: language knows which values went through the codec.
PERSONAL_JSON_SCHEMA_KEY = "x-memstream-personal"
#: Marks transcripts, which are also sealed with a key of the period their call began in.
TRANSCRIPT_JSON_SCHEMA_KEY = "x-memstream-transcript"
#: Marks a memory's content and vector, also sealed with a key of the period it was said in.
MEMORY_JSON_SCHEMA_KEY = "x-memstream-memory"

#: The families of period keys: one per tenant and UTC day each, destroyed by the
#: tenant's transcript retention and memory retention respectively.
TRANSCRIPT_PERIODS = "transcripts"
MEMORY_PERIODS = "memories"

#: What ``decode`` returns for a value whose key was destroyed (the subject was erased).
ERASED = "[erased]"


@runtime_checkable
class PersonalDataCodec(Protocol):
    """Turns a user's personal text into its stored form and back."""

    def encode(self, subject: str, value: str) -> str:
        """Return the stored form of ``value`` for the user ``subject``."""
        ...

    def decode(self, subject: str, value: str) -> str:
        """Return the plain text of a stored ``value`` for the user ``subject``."""
        ...


@runtime_checkable
class SubjectSealingCodec(PersonalDataCodec, Protocol):
    """A codec that also keeps the subject itself out of the log's bytes."""

    def pseudonym(self, subject: str) -> str:
        """A stable keyed hash of ``subject``: the record key of its events."""
        ...

    def seal_subject(self, subject: str, *, erasure_record: bool = False) -> str:
        """The stored form of the envelope's ``subject`` (``tenant/<sealed>``, so it keeps
        the shape of a subject). ``erasure_record``: the subject of a ``user.forgotten``,
        sealed with a key that erasure does not destroy."""
        ...

    def open_subject(self, stored: str) -> tuple[str, datetime | None] | None:
        """The subject of a stored ``subject`` (sealed or plain) and the time of its latest
        erasure (None: never erased); None when the key that sealed it was destroyed.
        Raises ``ValueError`` when it cannot be read otherwise."""
        ...


@runtime_checkable
class PeriodSealingCodec(PersonalDataCodec, Protocol):
    """A codec that seals transcripts (and memories) with a key of the period what they are
    about began in too."""

    def encode_period(self, subject: str, value: str, began: datetime, family: str) -> str:
        """The stored form of ``value`` of ``subject``, about what began at ``began``,
        sealed with the tenant's key of that period of ``family`` (:data:`TRANSCRIPT_PERIODS`
        or :data:`MEMORY_PERIODS`) as well; :data:`ERASED` when that period is past the
        tenant's retention of that family."""
        ...


class IdentityCodec:
    """Stores personal text as it is (the default until a process installs encryption)."""

    def encode(self, subject: str, value: str) -> str:
        return value

    def decode(self, subject: str, value: str) -> str:
        return value

    def __repr__(self) -> str:
        return "IdentityCodec()"


_codec: PersonalDataCodec = IdentityCodec()
# Cached so the hot decode path does not pay for a codec that does nothing.
_codec_is_identity = True
_sealing: SubjectSealingCodec | None = None
_periods: PeriodSealingCodec | None = None


def set_personal_codec(codec: PersonalDataCodec) -> PersonalDataCodec:
    """Install ``codec`` for the whole process and return the previous one (to restore it)."""
    global _codec, _codec_is_identity, _sealing, _periods
    if not isinstance(codec, PersonalDataCodec):
        raise TypeError(f"{codec!r} does not implement PersonalDataCodec (encode/decode)")
    previous = _codec
    _codec = codec
    _codec_is_identity = type(codec) is IdentityCodec
    _sealing = codec if isinstance(codec, SubjectSealingCodec) else None
    _periods = codec if isinstance(codec, PeriodSealingCodec) else None
    return previous


def get_personal_codec() -> PersonalDataCodec:
    """Return the codec currently installed."""
    return _codec


def subject_sealing_codec() -> SubjectSealingCodec | None:
    """The installed codec if it seals subjects (see :class:`SubjectSealingCodec`)."""
    return _sealing


def wire_context(subject: str, began: datetime | None = None) -> dict[str, Any]:
    """The pydantic context under which personal values are (de)coded for ``subject``;
    `began` (``Event.began``), when encoding, names the period a transcript is sealed for."""
    return {"wire": True, "subject": subject, "began": began}


def _wire_subject(context: Any) -> str | None:
    if not context or not context.get("wire"):
        return None
    subject = context.get("subject")
    if not isinstance(subject, str):
        # A wire context without a subject would silently skip encryption.
        raise ValueError("wire (de)serialisation of personal text needs a 'subject' in context")
    return subject


def _decode_personal(value: str, info: ValidationInfo) -> str:
    # Plain text (the identity codec, or written before encryption) costs nothing more.
    if _codec_is_identity or not value:
        return value
    context = info.context
    if context is not None and context.get("wire"):  # _wire_subject, inlined: hot path
        subject = context.get("subject")
        if isinstance(subject, str):
            return _codec.decode(subject, value)
    _wire_subject(context)  # a wire context without a subject: refused there
    return value


def _encode_personal(value: str, info: SerializationInfo) -> str:
    if _codec_is_identity or not value:
        return value
    subject = _wire_subject(info.context)
    return value if subject is None else _codec.encode(subject, value)


def _decode_personal_json(value: Any, info: ValidationInfo, erased: Any) -> Any:
    # An object on the wire was stored plain (identity codec, or before encryption).
    if _codec_is_identity or not isinstance(value, str):
        return value
    subject = _wire_subject(info.context)
    if subject is None:
        return value
    text = _codec.decode(subject, value)
    # Not JSON: orjson's error is a ValueError, so the field fails validation.
    return erased if text == ERASED else orjson.loads(text)


def _decode_personal_object(value: Any, info: ValidationInfo) -> Any:
    return _decode_personal_json(value, info, {})


def _decode_personal_array(value: Any, info: ValidationInfo) -> Any:
    return _decode_personal_json(value, info, [])


def _encode_personal_json(
    value: Any, handler: SerializerFunctionWrapHandler, info: SerializationInfo
) -> Any:
    plain = handler(value)
    if _codec_is_identity or not plain:
        return plain  # an empty object holds nothing to hide, and decodes as itself
    subject = _wire_subject(info.context)
    if subject is None:
        return plain
    return _codec.encode(subject, orjson.dumps(plain).decode())


def _seal_period(text: str, info: SerializationInfo, subject: str, family: str) -> str:
    began = (info.context or {}).get("began")
    if _periods is not None and isinstance(began, datetime):
        return _periods.encode_period(subject, text, began, family)
    return _codec.encode(subject, text)


def _period_json_encoder(
    family: str,
) -> Callable[[Any, SerializerFunctionWrapHandler, SerializationInfo], Any]:
    """The serializer of a JSON field sealed with the subject's key and the key of the
    period of `family` the event began in (transcripts, memories)."""

    def encode(value: Any, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        plain = handler(value)
        if _codec_is_identity or not plain:
            return plain
        subject = _wire_subject(info.context)
        if subject is None:
            return plain
        return _seal_period(orjson.dumps(plain).decode(), info, subject, family)

    return encode


def _encode_memory_text(value: str, info: SerializationInfo) -> str:
    if _codec_is_identity or not value:
        return value
    subject = _wire_subject(info.context)
    return value if subject is None else _seal_period(value, info, subject, MEMORY_PERIODS)


class _PersonalJsonSchema:
    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema[PERSONAL_JSON_SCHEMA_KEY] = True
        return schema


class _PersonalObjectJsonSchema:
    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The object, or the codec's stored form of its JSON text.
        return {
            "anyOf": [handler(core_schema), {"type": "string"}],
            PERSONAL_JSON_SCHEMA_KEY: True,
        }


class _TranscriptJsonSchema(_PersonalObjectJsonSchema):
    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            **super().__get_pydantic_json_schema__(core_schema, handler),
            TRANSCRIPT_JSON_SCHEMA_KEY: True,
        }


class _MemoryJsonSchema(_PersonalObjectJsonSchema):
    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            **super().__get_pydantic_json_schema__(core_schema, handler),
            MEMORY_JSON_SCHEMA_KEY: True,
        }


class _MemoryTextJsonSchema:
    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema[PERSONAL_JSON_SCHEMA_KEY] = True
        schema[MEMORY_JSON_SCHEMA_KEY] = True
        return schema


PersonalText = Annotated[
    str,
    AfterValidator(_decode_personal),
    PlainSerializer(_encode_personal, return_type=str),
    _PersonalJsonSchema(),
]
"""A string holding a user's personal data; stored through the personal codec."""

_T = TypeVar("_T")

PersonalJSON = Annotated[
    _T,
    BeforeValidator(_decode_personal_object),
    WrapSerializer(_encode_personal_json),
    _PersonalObjectJsonSchema(),
]
"""An object holding a user's personal data (``PersonalJSON[dict[str, Any]]``); stored
through the personal codec as its JSON text, as one value. Erased, it reads ``{}``."""

PersonalJSONArray = Annotated[
    _T,
    BeforeValidator(_decode_personal_array),
    WrapSerializer(_encode_personal_json),
    _PersonalObjectJsonSchema(),
]
"""An array holding a user's personal data, as one value like :data:`PersonalJSON`.
Erased, it reads ``[]``."""

TranscriptJSONArray = Annotated[
    _T,
    BeforeValidator(_decode_personal_array),
    WrapSerializer(_period_json_encoder(TRANSCRIPT_PERIODS)),
    _TranscriptJsonSchema(),
]
"""A call's transcript (``TranscriptJSONArray[tuple[Turn, ...]]``): a
:data:`PersonalJSONArray` that a :class:`PeriodSealingCodec` also seals with the key of
the period the call began in (``Event.began``). Erased or past retention, it reads
``[]``."""

MemoryText = Annotated[
    str,
    AfterValidator(_decode_personal),
    PlainSerializer(_encode_memory_text, return_type=str),
    _MemoryTextJsonSchema(),
]
"""A memory's content: a :data:`PersonalText` that a :class:`PeriodSealingCodec` also
seals with the ``memories`` key of the period the memory was first said in
(``Event.began``). Past the tenant's memory retention it reads :data:`ERASED`."""

MemoryJSONArray = Annotated[
    _T,
    BeforeValidator(_decode_personal_array),
    WrapSerializer(_period_json_encoder(MEMORY_PERIODS)),
    _MemoryJsonSchema(),
]
"""A memory's vector (``MemoryJSONArray[tuple[float, ...]]``), sealed like its content
(:data:`MemoryText`). Past the tenant's memory retention it reads ``[]``."""
