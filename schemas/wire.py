"""The one wire format: an event as a single JSON object, written and read with orjson.

:func:`encode_event` is the only way an event should become bytes and
:func:`decode_event` the only way bytes should become an event: both apply the
personal data codec (:mod:`schemas.codec`) and decoding upcasts old versions;
:func:`event_key` is the record key an event is appended under.

With a codec that seals subjects (:class:`schemas.codec.SubjectSealingCodec`), the
subject is stored sealed and the key is its pseudonym, and an event of an erased subject
does not decode: :class:`~schemas.exceptions.SubjectErased` when the key that sealed it
was destroyed, or when what it is about began (``Event.began``: for a call, its start) at
or before the subject's latest erasure — a late event derived from what came before the
erasure, the end of a call under way at it, or one written before encryption.
``user.forgotten`` itself is never erased: projections must apply it.

Decoding is on every projection's hot path, so the common case — a record at
the latest version of its type — costs one ``orjson.loads``, one dict lookup
and one pydantic validation; everything else (upcasting, classifying errors)
happens only off that path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from schemas import codec as _codec
from schemas import events as _events  # noqa: F401  (defining the event classes registers them)
from schemas.envelope import _LATEST, _REGISTRY, _UPCASTERS, FROM_LOG, Event, _version_of
from schemas.exceptions import (
    InvalidEvent,
    MalformedEvent,
    SubjectErased,
    UnknownEventType,
    ValidationErrorDetail,
)

__all__ = ["decode_event", "encode_event", "event_key"]

#: The event type whose subject is sealed as an erasure record and never erased.
_FORGOTTEN = "user.forgotten"

_MAX_ERRORS_IN_MESSAGE = 5


def encode_event(event: Event) -> bytes:
    """Serialise ``event`` to its wire form: compact UTF-8 JSON, personal text encoded.

    UUIDs and datetimes become strings; datetimes are ISO-8601 with their offset
    (``Z`` for UTC). An error of the codec (its key store unreachable) or of a value JSON
    cannot hold (``orjson.JSONEncodeError``) propagates as it was raised; a value nested
    too deep is pydantic's ``PydanticSerializationError``.
    """
    # pydantic turns the model into JSON-ready values (and applies the codec); orjson
    # writes the bytes, as it reads them in decode_event: one JSON library on the wire.
    # (pydantic-core's own writer measured ~25% faster on a 20-turn conversation;
    # encoding is off the projections' hot path, so we keep one library.)
    try:
        record = event.model_dump(
            mode="json", context=_codec.wire_context(event.subject, event.began)
        )
    except PydanticSerializationError as exc:
        # pydantic wraps what the codec raised (its key store unreachable, a value JSON
        # cannot hold): callers act on the original. Its own errors (a value nested too
        # deep) stay as pydantic raised them.
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, ValueError):
            raise cause from None
        raise
    sealing = _codec.subject_sealing_codec()
    if sealing is not None:
        record["subject"] = sealing.seal_subject(
            event.subject, erasure_record=event.type == _FORGOTTEN
        )
    return orjson.dumps(record)


def event_key(event: Event) -> bytes:
    """The record key of ``event``: its subject's pseudonym (the subject itself when the
    codec does not seal subjects). One subject, one key: its events share a partition."""
    sealing = _codec.subject_sealing_codec()
    return (event.subject if sealing is None else sealing.pseudonym(event.subject)).encode()


def decode_event(raw: bytes | bytearray | memoryview | str | dict[str, Any]) -> Event:
    """Read one wire record into an event of the latest version of its type.

    Raises :class:`~schemas.exceptions.MalformedEvent` (not a JSON object with
    ``type`` and ``v``), :class:`~schemas.exceptions.UnknownEventType` (type or
    version this code cannot read) or :class:`~schemas.exceptions.InvalidEvent`
    (content fails validation). A ``dict`` argument is never modified.
    """
    # A record read from the log was checked, when it was appended, for what only appending
    # needs refused (a NUL character, see Event): walking every string of a 40-turn
    # conversation again would make its decoding, on every projection's rebuild, about
    # two thirds slower. A dict is a document from outside (the events API, an import),
    # checked in full.
    from_log = not isinstance(raw, dict)
    if isinstance(raw, dict):
        record = raw
    else:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"event is not valid JSON: {exc}", code="not_json") from None
        if not isinstance(record, dict):
            raise MalformedEvent(
                f"event must be a JSON object, got {_json_kind(record)}", code="not_an_object"
            )

    event_type = record.get("type")
    version = record.get("v")
    # Exact type checks: True == 1 and 1.0 == 1 would find a class, and a list
    # 'type' would not even hash. Both are malformed, reported by _upcast.
    if type(event_type) is str and type(version) is int:
        cls = _REGISTRY.get((event_type, version))
        if cls is not None:
            return _validate(cls, record, version, from_log)
    cls, upcast = _upcast(record, event_type, version)
    return _validate(cls, upcast, version, from_log)


def _validate(cls: type[Event], record: dict[str, Any], version_read: Any, from_log: bool) -> Event:
    subject = record.get("subject")
    erased_at: datetime | None = None
    sealing = _codec.subject_sealing_codec()
    if sealing is not None and isinstance(subject, str):
        try:
            opened = sealing.open_subject(subject)
        except ValueError as exc:
            raise InvalidEvent(
                f"invalid {record.get('type')} v{version_read} event: subject: {exc}",
                errors=[{"loc": ("subject",), "msg": str(exc), "type": "value_error"}],
                event_type=_str_or_none(record.get("type")),
                version=version_read if type(version_read) is int else None,
                event_id=_id_of(record),
            ) from None
        if opened is None:
            raise _erased(record, version_read, "the key that sealed it was destroyed")
        plain, erased_at = opened
        if plain != subject:
            record = {**record, "subject": plain}  # a copy: the argument is never modified
            subject = plain
    # Without a string subject the event is invalid anyway; validating without
    # the wire context reports that instead of failing inside the codec.
    context: dict[str, Any] | None = None
    if isinstance(subject, str):
        context = _codec.wire_context(subject)
        context[FROM_LOG] = from_log
    try:
        event = cls.model_validate(record, context=context)
    except ValidationError as exc:
        raise _invalid(record, version_read, exc) from None
    if erased_at is not None and event.began <= erased_at and event.type != _FORGOTTEN:
        raise _erased(record, version_read, "what it is about began at or before the erasure")
    return event


def _erased(record: dict[str, Any], version: Any, why: str) -> SubjectErased:
    return SubjectErased(
        f"{record.get('type')} event of an erased subject: {why}",
        event_type=_str_or_none(record.get("type")),
        version=version if type(version) is int else None,
        event_id=_id_of(record),
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _upcast(
    record: dict[str, Any], event_type: Any, version: Any
) -> tuple[type[Event], dict[str, Any]]:
    """Check ``type`` and ``v`` and bring an old record up to the latest version."""
    event_id = _id_of(record)
    if not isinstance(event_type, str):
        raise MalformedEvent(
            "event has no 'type'" if event_type is None else "event 'type' must be a string",
            code="missing_type",
            event_id=event_id,
        )
    if type(version) is not int:
        raise MalformedEvent(
            f"{event_type} event has no integer 'v'",
            code="missing_version",
            event_type=event_type,
            event_id=event_id,
        )
    cls = _LATEST.get(event_type)
    if cls is None:
        raise UnknownEventType(
            f"unknown event type {event_type!r}",
            code="unknown_type",
            event_type=event_type,
            version=version,
            event_id=event_id,
        )
    latest = _version_of(cls)
    if version > latest:
        raise UnknownEventType(
            f"{event_type} v{version} is newer than v{latest}, the latest this code knows; "
            "deploy the newer schemas before reading it",
            code="future_version",
            event_type=event_type,
            version=version,
            event_id=event_id,
        )

    data = record.get("data")
    for from_version in range(version, latest):
        upcaster = _UPCASTERS.get((event_type, from_version))
        if upcaster is None:
            raise UnknownEventType(
                f"{event_type} v{version} cannot be read: no upcaster from v{from_version}",
                code="unknown_version",
                event_type=event_type,
                version=version,
                event_id=event_id,
            )
        if not isinstance(data, dict):
            continue  # upcasters read a dict; validation will say what 'data' is instead
        try:
            data = upcaster(data)
        except Exception as exc:
            raise InvalidEvent(
                f"{event_type} v{version} could not be upcast from v{from_version}: "
                f"{type(exc).__name__}: {exc}",
                code="upcast_failed",
                event_type=event_type,
                version=version,
                event_id=event_id,
            ) from exc
    upcast = {**record, "v": latest}
    if isinstance(data, dict):
        upcast["data"] = data
    return cls, upcast


def _invalid(record: dict[str, Any], version: Any, exc: ValidationError) -> InvalidEvent:
    errors: list[ValidationErrorDetail] = [
        {"loc": tuple(error["loc"]), "msg": error["msg"], "type": error["type"]}
        # Inputs are left out: they may be personal data, and errors are logged.
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    event_type = record.get("type")
    shown = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<event>'}: {error['msg']}"
        for error in errors[:_MAX_ERRORS_IN_MESSAGE]
    )
    more = len(errors) - _MAX_ERRORS_IN_MESSAGE
    if more > 0:
        shown += f"; and {more} more"
    return InvalidEvent(
        f"invalid {event_type} v{version} event: {shown}",
        errors=errors,
        event_type=event_type if isinstance(event_type, str) else None,
        version=version if type(version) is int else None,
        event_id=_id_of(record),
    )


def _id_of(record: dict[str, Any]) -> str | None:
    event_id = record.get("id")
    return event_id if isinstance(event_id, str) else None


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
