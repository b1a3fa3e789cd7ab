"""Errors raised while turning wire bytes into events.

Every decode failure is an :class:`EventDecodeError` (a ``ValueError``) with a
machine-readable ``code``, so a projection can route a record to the DLQ and a
dashboard can count failures by cause without parsing messages. Each error also
carries the event's ``type``, ``v`` and ``id`` when they could be read, which is
what a human needs to find the record again.

Codes:

=====================  ===================  =================================================
class                  code                 meaning
=====================  ===================  =================================================
MalformedEvent         ``not_json``         the bytes are not JSON
MalformedEvent         ``not_an_object``    the JSON is not an object
MalformedEvent         ``missing_type``     no ``type``, or it is not a string
MalformedEvent         ``missing_version``  no ``v``, or it is not an integer
UnknownEventType       ``unknown_type``     no event class is registered for ``type``
UnknownEventType       ``unknown_version``  ``v`` is older than any version we can upcast
UnknownEventType       ``future_version``   ``v`` is newer than the latest version we know
InvalidEvent           ``invalid_event``    the payload failed validation (see ``errors``)
InvalidEvent           ``upcast_failed``    an upcaster could not read the old payload
SubjectErased          ``subject_erased``   the event's subject was erased (user.forgotten)
=====================  ===================  =================================================

:class:`SubjectErased` is not a fault of the record: readers skip such an event
(the projection runtime checkpoints past it) instead of dead-lettering it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

__all__ = [
    "EventDecodeError",
    "InvalidEvent",
    "MalformedEvent",
    "SubjectErased",
    "UnknownEventType",
    "ValidationErrorDetail",
]


class ValidationErrorDetail(TypedDict):
    """One validation failure: where (``loc``), what (``msg``) and its pydantic ``type``."""

    loc: tuple[int | str, ...]
    msg: str
    type: str


class EventDecodeError(ValueError):
    """A record could not be decoded into an event."""

    default_code = "decode_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        event_type: str | None = None,
        version: int | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.event_type = event_type
        self.version = version
        self.event_id = event_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are lost by the default pickling of exceptions;
        # errors cross process boundaries (DLQ workers, multiprocessing pools).
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[EventDecodeError], message: str, state: dict[str, Any]) -> EventDecodeError:
    error = cls.__new__(cls)
    ValueError.__init__(error, message)
    error.__dict__.update(state)
    return error


class MalformedEvent(EventDecodeError):
    """The record is not a JSON object with a string ``type`` and an integer ``v``."""

    default_code = "malformed_event"


class UnknownEventType(EventDecodeError):
    """The ``type`` is not registered, or its ``v`` is not one this code can read."""

    default_code = "unknown_type"


class InvalidEvent(EventDecodeError):
    """The record names a known type and version but its content is invalid.

    ``errors`` lists each failure with its field path; input values are left out
    on purpose because they may hold personal data and errors end up in logs.
    """

    default_code = "invalid_event"

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[ValidationErrorDetail] = (),
        code: str | None = None,
        event_type: str | None = None,
        version: int | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(
            message, code=code, event_type=event_type, version=version, event_id=event_id
        )
        self.errors: list[ValidationErrorDetail] = list(errors)


class SubjectErased(EventDecodeError):
    """The event belongs to an erased subject: its key was destroyed, or it is dated at or
    before the subject's latest erasure (docs/architecture.md, "Personal data and erasure").

    Deterministic like every decode error, but not poison: what the event said is gone on
    purpose, and a reader skips it.
    """

    default_code = "subject_erased"
