"""The single point every personal text field passes through on its way to and from the wire.

Erasure in memstream is crypto-shredding (docs/architecture.md, "Events"): personal fields
are to be encrypted with a per-user key, and ``user.forgotten`` destroys the key.
So that encryption can be added in one place later, every personal text field is
typed :data:`PersonalText`, and that type calls the process-wide
:class:`PersonalDataCodec`:

- ``encode(subject, text)`` when an event is serialised for the wire
  (:func:`schemas.wire.encode_event`);
- ``decode(subject, text)`` when an event is validated from the wire
  (:func:`schemas.wire.decode_event`).

The codec runs only when the pydantic (de)serialisation context says
``{"wire": True, "subject": ...}``. Events built in Python code and
``model_dump()`` without that context see plain text, so nothing is encoded twice.

A codec that cannot decode a value (for instance because the user's key was
shredded) should raise ``ValueError`` — the decode then fails as
:class:`schemas.exceptions.InvalidEvent` — or return a redaction marker if readers
should keep going.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import (
    AfterValidator,
    GetJsonSchemaHandler,
    PlainSerializer,
    SerializationInfo,
    ValidationInfo,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = [
    "PERSONAL_JSON_SCHEMA_KEY",
    "IdentityCodec",
    "PersonalDataCodec",
    "PersonalText",
    "get_personal_codec",
    "set_personal_codec",
    "wire_context",
]

#: Marks personal fields in the generated JSON Schemas, so a reader in another
#: language knows which strings went through the codec.
PERSONAL_JSON_SCHEMA_KEY = "x-memstream-personal"


@runtime_checkable
class PersonalDataCodec(Protocol):
    """Turns a user's personal text into its stored form and back."""

    def encode(self, subject: str, value: str) -> str:
        """Return the stored form of ``value`` for the user ``subject``."""
        ...

    def decode(self, subject: str, value: str) -> str:
        """Return the plain text of a stored ``value`` for the user ``subject``."""
        ...


class IdentityCodec:
    """Stores personal text as it is (the default until per-user encryption exists)."""

    def encode(self, subject: str, value: str) -> str:
        return value

    def decode(self, subject: str, value: str) -> str:
        return value

    def __repr__(self) -> str:
        return "IdentityCodec()"


_codec: PersonalDataCodec = IdentityCodec()
# Cached so the hot decode path does not pay for a codec that does nothing.
_codec_is_identity = True


def set_personal_codec(codec: PersonalDataCodec) -> PersonalDataCodec:
    """Install ``codec`` for the whole process and return the previous one (to restore it)."""
    global _codec, _codec_is_identity
    if not isinstance(codec, PersonalDataCodec):
        raise TypeError(f"{codec!r} does not implement PersonalDataCodec (encode/decode)")
    previous = _codec
    _codec = codec
    _codec_is_identity = type(codec) is IdentityCodec
    return previous


def get_personal_codec() -> PersonalDataCodec:
    """Return the codec currently installed."""
    return _codec


def wire_context(subject: str) -> dict[str, Any]:
    """The pydantic context under which personal text is (de)coded for ``subject``."""
    return {"wire": True, "subject": subject}


def _wire_subject(context: Any) -> str | None:
    if not context or not context.get("wire"):
        return None
    subject = context.get("subject")
    if not isinstance(subject, str):
        # A wire context without a subject would silently skip encryption.
        raise ValueError("wire (de)serialisation of personal text needs a 'subject' in context")
    return subject


def _decode_personal(value: str, info: ValidationInfo) -> str:
    if _codec_is_identity:
        return value
    subject = _wire_subject(info.context)
    return value if subject is None else _codec.decode(subject, value)


def _encode_personal(value: str, info: SerializationInfo) -> str:
    if _codec_is_identity:
        return value
    subject = _wire_subject(info.context)
    return value if subject is None else _codec.encode(subject, value)


class _PersonalJsonSchema:
    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema[PERSONAL_JSON_SCHEMA_KEY] = True
        return schema


PersonalText = Annotated[
    str,
    AfterValidator(_decode_personal),
    PlainSerializer(_encode_personal, return_type=str),
    _PersonalJsonSchema(),
]
"""A string holding a user's personal data; stored through the personal codec."""
