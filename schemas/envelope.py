"""The event envelope every record on every topic shares, the event registry, and event ids.

An event type is a subclass of :class:`Event` that narrows ``type`` and ``v`` to
literals, narrows ``data`` to its payload model and names its logical ``topic``.
Defining the class registers it under ``(type, v)``. Only the latest version of a
type is a class; each older version is an *upcaster*, a static method on that
class marked with :func:`upcasts_from`, which turns the ``data`` dict of version
``n`` into the ``data`` dict of version ``n + 1``.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType, UnionType
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from schemas.exceptions import UnknownEventType

__all__ = [
    "EARLIEST_INSTANT",
    "EVENT_TYPES",
    "LATEST_INSTANT",
    "LOGICAL_TOPICS",
    "MAX_ID_CHARS",
    "MEMSTREAM_NAMESPACE",
    "Event",
    "EventData",
    "Id",
    "Instant",
    "Source",
    "Upcaster",
    "derived_event_id",
    "event_class",
    "holds_nul",
    "new_event_id",
    "readable_versions",
    "registered_types",
    "tenant_event_id",
    "upcaster_for",
    "upcasts_from",
    "utc_now",
]

#: The topics events are appended to, without the deployment prefix that
#: ``streams`` adds (``conversations`` -> ``memstream.conversations``).
LOGICAL_TOPICS: frozenset[str] = frozenset(
    {"conversations", "memories", "embeddings", "summaries", "live"}
)

#: The longest id an event holds (a conversation or call, a user, a source's ids), as the
#: query API's: ids are indexed, and a btree entry of PostgreSQL holds at most about
#: 2,700 bytes, so a longer id would be acknowledged and then never projected.
MAX_ID_CHARS = 256

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# The tenant part is checked against the ``tenant`` field by Event itself; the
# pattern only documents the shape in the JSON Schema. The user part is an id, or
# the subject of a caller nothing identifies, ``anonymous-<conversation id>``
# (services/identity.py), longer than an id by its prefix; 256 is MAX_ID_CHARS.
SUBJECT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}/(?:.{1,256}|anonymous-.{1,256})$"

_TENANT_RE = re.compile(TENANT_PATTERN)

Tenant = Annotated[str, StringConstraints(pattern=TENANT_PATTERN)]
Subject = Annotated[str, StringConstraints(pattern=SUBJECT_PATTERN)]
Id = Annotated[str, StringConstraints(max_length=MAX_ID_CHARS)]
"""An id from outside memstream (a platform's call or agent id): at most
:data:`MAX_ID_CHARS` characters."""

#: The earliest and the latest point in time an event may hold. Calls happen now, give or
#: take a clock: a time outside these is a broken sender. Refusing it keeps the date
#: arithmetic downstream from overflowing (a period's start, a call's end), and PostgreSQL
#: from storing a time it holds but psycopg cannot read back (after 9999 in UTC).
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)


def _plausible(value: datetime) -> datetime:
    # Compared, never converted: astimezone on year 1 at +14:00 overflows.
    if not EARLIEST_INSTANT <= value <= LATEST_INSTANT:
        raise ValueError("must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z")
    return value


class _PlausibleJsonSchema:
    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The bounds of a date-time in the vocabulary of JSON Schema's format validators.
        schema = handler(core_schema)
        schema["formatMinimum"] = f"{EARLIEST_INSTANT:%Y-%m-%dT%H:%M:%SZ}"
        schema["formatMaximum"] = f"{LATEST_INSTANT:%Y-%m-%dT%H:%M:%SZ}"
        return schema


Instant = Annotated[AwareDatetime, AfterValidator(_plausible), _PlausibleJsonSchema()]
"""A timezone-aware point in time between :data:`EARLIEST_INSTANT` and
:data:`LATEST_INSTANT`: every time an event holds is one."""

# --------------------------------------------------------------------------- ids

#: Namespace of every derived event id. Changing it changes every derived id and
#: so breaks idempotency against events already in the log: never change it.
MEMSTREAM_NAMESPACE = uuid.UUID("6f1c2b0e-8d4a-5e37-9c51-3a7d2e9b4f60")

_ID_SEPARATOR = "\x1f"  # ASCII unit separator; parts containing it are refused.

_RAND_BITS = 74  # rand_a (12) + rand_b (62) of RFC 9562 UUIDv7
_RAND_LIMIT = 1 << _RAND_BITS
_V7_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_id_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _forget_last_id() -> None:
    # A forked child would otherwise continue the parent's sequence and could
    # hand out the same "last + 1" id in the same millisecond.
    global _last_ms
    _last_ms = 0


os.register_at_fork(after_in_child=_forget_last_id)


def new_event_id() -> uuid.UUID:
    """Return a fresh UUIDv7 (RFC 9562): unix-millisecond timestamp first, random after.

    Ids from one process are strictly increasing: within a millisecond (or if
    the clock steps back) the 74 random bits are incremented instead of redrawn
    (RFC 9562 section 6.2, method 2), so ids sort in creation order.
    """
    global _last_ms, _last_rand
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            rand = int.from_bytes(os.urandom(10)) >> (80 - _RAND_BITS)
        else:
            ms = _last_ms
            rand = _last_rand + 1
            if rand >= _RAND_LIMIT:
                # Counter exhausted: borrow the next millisecond rather than repeat.
                ms += 1
                rand = int.from_bytes(os.urandom(10)) >> (80 - _RAND_BITS)
        _last_ms, _last_rand = ms, rand
    value = (
        ((ms & 0xFFFF_FFFF_FFFF) << 80)
        | _V7_VERSION_AND_VARIANT
        | ((rand >> 62) << 64)
        | (rand & ((1 << 62) - 1))
    )
    return uuid.UUID(int=value)


def derived_event_id(*parts: str) -> uuid.UUID:
    """Return the UUIDv5 of ``parts`` under :data:`MEMSTREAM_NAMESPACE`.

    Used wherever a redelivery or a reprocessing must give the same id, e.g.
    ``derived_event_id("memory", str(event.id), content)``; a key from outside
    memstream (a platform's call id) goes through :func:`tenant_event_id`.
    """
    if not parts:
        raise ValueError("derived_event_id needs at least one part")
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"derived_event_id parts must be str, got {type(part).__name__}")
        if _ID_SEPARATOR in part:
            # ("a\x1fb",) and ("a", "b") would otherwise collide.
            raise ValueError("derived_event_id parts must not contain the \\x1f separator")
    return uuid.uuid5(MEMSTREAM_NAMESPACE, _ID_SEPARATOR.join(parts))


def tenant_event_id(tenant: str, *parts: str) -> uuid.UUID:
    """Return the derived id of an event keyed by an upstream key, scoped to ``tenant``.

    ``derived_event_id(tenant, *parts)``: the same platform call sent to two tenants
    (staging and production) is two events, e.g. ``tenant_event_id("acme",
    "elevenlabs", "post_call_transcription", conversation_id)``. Webhook events got
    ``derived_event_id(platform, ...)`` before: those stay in the log as they are.
    """
    if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant):
        raise ValueError(f"tenant_event_id needs a tenant id, got {tenant!r}")
    if not parts:
        raise ValueError("tenant_event_id needs an upstream key after the tenant")
    return derived_event_id(tenant, *parts)


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


# ---------------------------------------------------------------------- envelope


class Source(BaseModel):
    """Where an event came from; with the event type, the dedupe key of webhooks."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    platform: Id
    """``elevenlabs``, ``vapi``, ``retell``, ``api`` or ``memstream`` (derived events)."""
    event_id: Id | None = None
    """The platform's own event, call or conversation id."""
    agent_id: Id | None = None


class EventData(BaseModel):
    """Base of every event payload and of the models inside payloads."""

    # Unknown fields are rejected: any change to a payload is a new version with
    # an upcaster, so a reader never silently drops data it does not understand.
    # NaN and infinity are rejected because JSON cannot carry them.
    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True
    )


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the ``data`` dict of version ``n`` into the ``data`` dict of version ``n + 1``."""

_F = TypeVar("_F", bound=Callable[..., Any])
_UPCAST_MARK = "__memstream_upcasts_from__"


def upcasts_from(version: int) -> Callable[[_F], _F]:
    """Mark a static method of an event class as the upcaster from ``version`` to ``version + 1``.

    The method receives the raw ``data`` dict of the old version (before any
    validation) and returns a new dict; it must not mutate its argument.
    Place it under ``@staticmethod``::

        @staticmethod
        @upcasts_from(1)
        def upcast_v1(data: dict[str, Any]) -> dict[str, Any]: ...
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"upcasts_from needs a version >= 1, got {version!r}")

    def mark(function: _F) -> _F:
        setattr(function, _UPCAST_MARK, version)
        return function

    return mark


_REGISTRY: dict[tuple[str, int], type[Event]] = {}
_LATEST: dict[str, type[Event]] = {}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}

#: Read-only view: event type name -> class of its latest version.
EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType(_LATEST)


def _literal_value(cls: type[Event], field: str) -> object:
    annotation = cls.model_fields[field].annotation
    args = get_args(annotation)
    if get_origin(annotation) is not Literal or len(args) != 1:
        raise TypeError(f"{cls.__name__}.{field} must be a single Literal, e.g. Literal[1]")
    return args[0]


class Event(BaseModel):
    """The envelope shared by every event; subclasses are the event types."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    id: uuid.UUID
    """Idempotency key downstream: UUIDv7 for a new fact, UUIDv5 when derived."""
    type: str
    v: int
    tenant: Tenant
    subject: Subject
    """The user the event is about, ``tenant/user``; the Kafka key."""
    occurred_at: Instant
    """Platform time."""
    recorded_at: Instant
    """Time the event was appended."""
    source: Source
    correlation_id: Id | None = None
    """The conversation id."""
    causation_id: uuid.UUID | None = None
    """Id of the event this one was derived from."""
    data: EventData

    topic: ClassVar[str]
    """Logical topic, one of :data:`LOGICAL_TOPICS`; ``streams`` adds the prefix."""
    has_transcript: ClassVar[bool] = False
    """Whether the type has a :data:`schemas.codec.TranscriptJSONArray` field, sealed with
    the key of the period the event ``began`` in as well (``EventLog`` prepares that key)."""
    period_family: ClassVar[str | None] = None
    """The family of the period key a field of the type is sealed with as well (``began``'s
    UTC day): ``transcripts`` for a transcript, ``memories`` for a memory's content or
    vector (:data:`schemas.codec.MemoryText`); None when no field is."""

    @property
    def began(self) -> datetime:
        """When what the event is about began: for an event about a call, when the call
        began (a type whose time is not that says so, e.g. ``conversation.ended``); else
        the event's own time. An erasure covers the event when it is at or after this: a
        call that began at or before a user's erasure is the forgotten user's, whenever it
        ended, and one that begins after it is a new relationship."""
        return self.occurred_at

    @model_validator(mode="after")
    def _no_nul_character(self, info: ValidationInfo) -> Self:
        # PostgreSQL text (and jsonb) cannot hold a NUL: an event with one anywhere, in a
        # turn's text, a metadata key or the subject, would be acknowledged and then fail
        # in every projection. Checked on the decoded values, where sealed fields are open;
        # not again on a record read back from the log (schemas.wire.decode_event).
        context = info.context
        if context is not None and context.get(FROM_LOG):
            return self
        if holds_nul(self):
            raise ValueError(
                f"{_nul_path(self)} holds a NUL character (\\u0000), which memstream cannot store"
            )
        return self

    @model_validator(mode="after")
    def _subject_belongs_to_tenant(self) -> Self:
        # The pattern already guarantees a non-empty user part after the first "/".
        if not self.subject.startswith(self.tenant + "/"):
            raise ValueError(
                f"subject must be '{self.tenant}/<user>' for tenant {self.tenant!r}, "
                f"got {self.subject!r}"
            )
        return self

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _register(cls)

    @classmethod
    def create(
        cls,
        *,
        tenant: str,
        subject: str,
        data: EventData | Mapping[str, Any],
        source: Source | Mapping[str, Any],
        occurred_at: datetime,
        id: uuid.UUID | None = None,
        recorded_at: datetime | None = None,
        correlation_id: str | None = None,
        causation_id: uuid.UUID | None = None,
    ) -> Self:
        """Build a validated event; ``id`` defaults to a new UUIDv7, ``recorded_at`` to now."""
        event_type = cls.model_fields["type"].default
        if cls is Event or _LATEST.get(event_type) is not cls:
            raise TypeError(f"{cls.__name__} is not a registered event type")
        return cls(
            id=id if id is not None else new_event_id(),
            type=event_type,
            v=_version_of(cls),
            tenant=tenant,
            subject=subject,
            occurred_at=occurred_at,
            recorded_at=recorded_at if recorded_at is not None else utc_now(),
            source=source,
            correlation_id=correlation_id,
            causation_id=causation_id,
            data=data,
        )


_NUL = "\x00"

#: Key of the validation context set when a record read from the log is decoded.
FROM_LOG = "from_log"


_TEXT_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _text_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``cls`` that may hold a string: not a vector's thousands of floats,
    which would make the walk many times slower than validating the event."""
    names = _TEXT_FIELDS.get(cls)
    if names is None:
        names = tuple(
            name for name, field in cls.model_fields.items() if _may_hold_text(field.annotation)
        )
        _TEXT_FIELDS[cls] = names
    return names


_NEVER_TEXT = (bool, int, float, uuid.UUID, datetime, AwareDatetime, type(None))


def _may_hold_text(annotation: Any) -> bool:
    if annotation in _NEVER_TEXT:
        return False
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _may_hold_text(args[0])
    if origin is Literal:
        return False  # the model's own strings
    if origin in (Union, UnionType, tuple, list, frozenset, set):
        return any(_may_hold_text(arg) for arg in args if arg is not Ellipsis)
    return True  # str, Any, a dict, a model, anything else: walked


def holds_nul(root: object) -> bool:
    """Whether a string anywhere in ``root`` (a model or parsed JSON, dict keys included)
    holds a NUL.

    A loop over a stack, not recursion: metadata kept verbatim may nest deeper than
    Python's recursion limit allows. Run on every event made or taken from outside, so
    as lean as it can be."""
    stack: list[object] = [root]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        value = pop()
        if isinstance(value, str):
            if _NUL in value:
                return True
        elif isinstance(value, BaseModel):
            fields = value.__dict__
            extend(fields[name] for name in _text_fields(type(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _NUL in key:
                    return True
                push(item)
        elif isinstance(value, list | tuple):
            extend(value)
    return False


def _nul_path(root: object) -> str:
    """Where a NUL is, e.g. ``data.turns[1].text``, or ``a key of data.metadata`` (never
    the key itself, which holds it); called once :func:`holds_nul` found one."""
    stack: list[tuple[object, str]] = [(root, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _NUL in value:
                return path or "the event"
        elif isinstance(value, BaseModel):
            fields = value.__dict__
            stack.extend(
                (fields[name], _key_path(path, name)) for name in _text_fields(type(value))
            )
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _NUL in key:
                    return f"a key of {path or 'the event'}"
                stack.append((item, _key_path(path, str(key))))
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
    return "the event"


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _register(cls: type[Event]) -> None:
    event_type = _literal_value(cls, "type")
    version = _literal_value(cls, "v")
    if not isinstance(event_type, str) or not event_type:
        raise TypeError(f"{cls.__name__}.type must be a non-empty string literal")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TypeError(f"{cls.__name__}.v must be an integer literal >= 1")
    for field, expected in (("type", event_type), ("v", version)):
        if cls.model_fields[field].default != expected:
            raise TypeError(f"{cls.__name__}.{field} must default to {expected!r}")
    topic = getattr(cls, "topic", None)
    if topic not in LOGICAL_TOPICS:
        raise TypeError(
            f"{cls.__name__}.topic must be one of {sorted(LOGICAL_TOPICS)}, got {topic!r}"
        )
    if event_type in _LATEST:
        raise TypeError(
            f"{event_type!r} is already registered by {_LATEST[event_type].__qualname__}; "
            "only the latest version of a type is a class, older ones are upcasters"
        )

    upcasters: dict[int, Upcaster] = {}
    for attribute in vars(cls).values():
        function = attribute.__func__ if isinstance(attribute, staticmethod) else attribute
        from_version = getattr(function, _UPCAST_MARK, None)
        if from_version is None:
            continue
        if not isinstance(attribute, staticmethod):
            raise TypeError(f"upcaster {function.__qualname__} must be a @staticmethod")
        if from_version in upcasters:
            raise TypeError(f"{cls.__name__} has two upcasters from v{from_version}")
        upcasters[from_version] = function
    # Decoding walks the chain one step at a time, so every step from v1 up must exist.
    if sorted(upcasters) != list(range(1, version)):
        raise TypeError(
            f"{cls.__name__} is v{version}: it needs exactly one upcaster from each of "
            f"v1..v{version - 1}, has {sorted(upcasters)}"
        )

    _REGISTRY[(event_type, version)] = cls
    _LATEST[event_type] = cls
    for from_version, upcaster in upcasters.items():
        _UPCASTERS[(event_type, from_version)] = upcaster


def event_class(event_type: str, v: int | None = None) -> type[Event]:
    """Return the class of ``event_type`` (its latest version, or exactly ``v`` if given).

    Raises :class:`~schemas.exceptions.UnknownEventType` if there is none.
    """
    cls = _LATEST.get(event_type)
    if cls is None:
        raise UnknownEventType(
            f"unknown event type {event_type!r}", code="unknown_type", event_type=event_type
        )
    latest = _version_of(cls)
    if v is not None and v != latest:
        raise UnknownEventType(
            f"{event_type} v{v} is not a class; the latest version is v{latest}",
            code="future_version" if v > latest else "unknown_version",
            event_type=event_type,
            version=v,
        )
    return cls


def registered_types() -> list[tuple[str, int]]:
    """Every registered ``(type, latest v)``, sorted by type."""
    return sorted(_REGISTRY)


def readable_versions(event_type: str) -> list[int]:
    """Every version of ``event_type`` that decodes: the latest and those it upcasts from."""
    return list(range(1, _version_of(event_class(event_type)) + 1))


def upcaster_for(event_type: str, from_version: int) -> Upcaster | None:
    """The upcaster from ``from_version`` of ``event_type``, if there is one."""
    return _UPCASTERS.get((event_type, from_version))


def _version_of(cls: type[Event]) -> int:
    version = cls.model_fields["v"].default
    assert isinstance(version, int)
    return version
