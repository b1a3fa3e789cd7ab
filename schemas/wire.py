"""The one wire format: an event as a single JSON object, written and read with orjson.

:func:`encode_event` is the only way an event should become bytes and
:func:`decode_event` the only way bytes should become an event: both apply the
personal text codec (:mod:`schemas.codec`) and decoding upcasts old versions.

Decoding is on every projection's hot path, so the common case — a record at
the latest version of its type — costs one ``orjson.loads``, one dict lookup
and one pydantic validation; everything else (upcasting, classifying errors)
happens only off that path.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from schemas import codec as _codec
from schemas import events as _events  # noqa: F401  (defining the event classes registers them)
from schemas.envelope import _LATEST, _REGISTRY, _UPCASTERS, Event, _version_of
from schemas.exceptions import (
    InvalidEvent,
    MalformedEvent,
    UnknownEventType,
    ValidationErrorDetail,
)

__all__ = ["decode_event", "encode_event"]

_MAX_ERRORS_IN_MESSAGE = 5


def encode_event(event: Event) -> bytes:
    """Serialise ``event`` to its wire form: compact UTF-8 JSON, personal text encoded.

    UUIDs and datetimes become strings; datetimes are ISO-8601 with their offset
    (``Z`` for UTC).
    """
    # pydantic turns the model into JSON-ready values (and applies the codec); orjson
    # writes the bytes, as it reads them in decode_event: one JSON library on the wire.
    # (pydantic-core's own writer measured ~25% faster on a 20-turn conversation;
    # encoding is off the projections' hot path, so we keep one library.)
    return orjson.dumps(event.model_dump(mode="json", context=_codec.wire_context(event.subject)))


def decode_event(raw: bytes | bytearray | memoryview | str | dict[str, Any]) -> Event:
    """Read one wire record into an event of the latest version of its type.

    Raises :class:`~schemas.exceptions.MalformedEvent` (not a JSON object with
    ``type`` and ``v``), :class:`~schemas.exceptions.UnknownEventType` (type or
    version this code cannot read) or :class:`~schemas.exceptions.InvalidEvent`
    (content fails validation). A ``dict`` argument is never modified.
    """
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
            return _validate(cls, record, version)
    cls, upcast = _upcast(record, event_type, version)
    return _validate(cls, upcast, version)


def _validate(cls: type[Event], record: dict[str, Any], version_read: Any) -> Event:
    subject = record.get("subject")
    # Without a string subject the event is invalid anyway; validating without
    # the wire context reports that instead of failing inside the codec.
    context = _codec.wire_context(subject) if isinstance(subject, str) else None
    try:
        return cls.model_validate(record, context=context)
    except ValidationError as exc:
        raise _invalid(record, version_read, exc) from None


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
