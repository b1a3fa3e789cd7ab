"""Reading a parsed webhook body field by field, with the path of every field for errors.

Every platform adapter reads its body through :class:`Node`, so a wrong shape
anywhere becomes a :class:`~services.ingest.platforms.exceptions.PayloadError`
naming the field (``data.transcript[3].time_in_call_secs``) instead of a
``KeyError`` or ``TypeError`` deep inside an adapter.

Conventions shared by all adapters:

- an absent field and a JSON ``null`` are the same thing, "missing";
- ``optional_*`` readers return ``None`` for a missing field, required readers
  raise; both raise when the field is present with the wrong JSON type;
- fields nobody reads are never looked at, so unknown fields are ignored;
- what is kept must be storable: no string anywhere (an object's keys included) holds
  a NUL character, which PostgreSQL text cannot hold; no id is longer than
  ``MAX_ID_CHARS``, which the read models index; no point in time is outside
  ``EARLIEST_INSTANT``..``LATEST_INSTANT``. The event schemas refuse the same, but a
  refusal here names the field of the body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.envelope import EARLIEST_INSTANT, LATEST_INSTANT, MAX_ID_CHARS, holds_nul
from schemas.events import MAX_CALL_SECS
from services.ingest.platforms.exceptions import PayloadError

__all__ = [
    "MAX_CALL_SECS",
    "MAX_ID_CHARS",
    "Node",
    "tool_arguments",
    "tool_result_text",
]

_MISSING: Any = object()

_PLAUSIBLE = f"{EARLIEST_INSTANT:%Y-%m-%dT%H:%M:%SZ}..{LATEST_INSTANT:%Y-%m-%dT%H:%M:%SZ}"

# Ids end up in Kafka keys, derived event ids (which refuse \x1f) and subjects
# (whose pattern does not match a newline): a control character is a wrong shape.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_NUL = "\x00"

# Unix timestamps in milliseconds are above this; in seconds they stay below it
# until the year 5138. Used only where a platform's unit is unconfirmed.
_SMALLEST_UNIX_MS = 100_000_000_000

# Values kept verbatim in an event (metadata, analysis, variables) nest no deeper than
# this: far beyond what a platform sends, and well within what the event's encoding takes
# (orjson and pydantic write at most ~255 levels; Python's own recursion, ~1000 frames,
# would fail first on a body nested as deep as JSON parsing allows).
MAX_KEPT_DEPTH = 64

# MAX_CALL_SECS (schemas.events): no call lasts a week, so a duration or an offset
# beyond it is a broken payload; refusing it here also keeps timedelta and the integers
# of the wire format and the read models from overflowing further on.


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


class Node:
    """A value inside a webhook body, with the path it was read from."""

    __slots__ = ("_value", "path")

    def __init__(self, value: Any, path: str = "") -> None:
        self._value = value
        self.path = path

    def __repr__(self) -> str:
        # Never the value: it may be personal data.
        return f"Node(path={self.path!r})"

    # ------------------------------------------------------------------ navigation

    @property
    def missing(self) -> bool:
        """True if the field is absent or null."""
        return self._value is _MISSING or self._value is None

    @property
    def raw(self) -> Any:
        """The JSON value as parsed, ``None`` when missing (for values kept verbatim)."""
        return None if self.missing else self._value

    def __getitem__(self, key: str) -> Node:
        """The field ``key`` of this object; missing if this node is missing."""
        path = f"{self.path}.{key}" if self.path else key
        if self.missing:
            return Node(_MISSING, path)
        if not isinstance(self._value, dict):
            raise self.error(f"must be an object, got {_json_kind(self._value)}")
        return Node(self._value.get(key, _MISSING), path)

    def first(self, *keys: str) -> Node:
        """The first of the fields ``keys`` that is present, else the last one (missing)."""
        node = self[keys[0]]
        for key in keys[1:]:
            if not node.missing:
                return node
            node = self[key]
        return node

    def items(self) -> list[Node]:
        """The elements of this list; an empty list if missing."""
        if self.missing:
            return []
        if not isinstance(self._value, list):
            raise self.error(f"must be a list, got {_json_kind(self._value)}")
        return [Node(value, f"{self.path}[{index}]") for index, value in enumerate(self._value)]

    def error(self, message: str) -> PayloadError:
        """A :class:`PayloadError` about this field."""
        return PayloadError(self.path, message)

    # ---------------------------------------------------------------------- values

    def object(self) -> dict[str, Any]:
        """A deep copy of this object, ``{}`` if missing (kept verbatim in an event)."""
        if self.missing:
            return {}
        if not isinstance(self._value, dict):
            raise self.error(f"must be an object, got {_json_kind(self._value)}")
        # A copy, so the event never shares mutable state with the caller's body.
        copied: dict[str, Any] = self._kept(self._value)
        return copied

    def object_except(self, keys: Collection[str]) -> dict[str, Any]:
        """Like :meth:`object`, without the fields ``keys`` (those mapped elsewhere)."""
        return {key: value for key, value in self.object().items() if key not in keys}

    def verbatim(self) -> Any:
        """A deep copy of whatever JSON value is here, ``None`` if missing."""
        return self._kept(self.raw)

    def _kept(self, value: Any) -> Any:
        """A deep copy of a JSON value to keep in an event (422 if nested too deep, or if a
        string in it, a key included, holds a NUL character)."""
        try:
            return _json_copy(value, MAX_KEPT_DEPTH)
        except _TooDeep:
            raise self.error(f"nests deeper than {MAX_KEPT_DEPTH} levels") from None
        except _HoldsNul:
            raise Node(value, self.path)._error_at_nul() from None

    def _error_at_nul(self) -> PayloadError:
        """The error about the first NUL character in this value (a string, a list or an
        object), naming the field that holds it; the value is one :meth:`_kept` refused."""
        value = self._value
        if isinstance(value, dict):
            for key, item in value.items():
                if _NUL in key:
                    return self.error("has a key holding a NUL character (\\u0000)")
                if holds_nul(item):
                    return self[key]._error_at_nul()
        if isinstance(value, list):
            for node in self.items():
                if holds_nul(node.raw):
                    return node._error_at_nul()
        return self.error("must not contain a NUL character (\\u0000)")

    def optional_string(self) -> str | None:
        """A string, or ``None`` if missing; never one holding a NUL character, which no
        read model can store."""
        if self.missing:
            return None
        if not isinstance(self._value, str):
            raise self.error(f"must be a string, got {_json_kind(self._value)}")
        if _NUL in self._value:
            raise self.error("must not contain a NUL character (\\u0000)")
        return self._value

    def string(self) -> str:
        """A string that must be present (it may be empty)."""
        value = self.optional_string()
        if value is None:
            raise self.error("is required")
        return value

    def optional_identifier(self, *, integers: bool = False) -> str | None:
        """An id: a string without control characters, of at most ``MAX_ID_CHARS``
        characters; ``None`` if missing or blank.

        With ``integers``, a JSON integer is accepted too, as its decimal text
        (for ids a customer passes through variables that may be numbers).
        """
        if integers and isinstance(self._value, int) and not isinstance(self._value, bool):
            return str(self._value)
        # A string is read here, not by optional_string: a NUL is a control character.
        value = self._value if isinstance(self._value, str) else self.optional_string()
        if value is None or not value.strip():
            return None
        if _CONTROL_CHARACTER.search(value):
            raise self.error("must not contain control characters")
        if len(value) > MAX_ID_CHARS:
            raise self.error(f"must be at most {MAX_ID_CHARS} characters")
        return value

    def identifier(self) -> str:
        """An id that must be present and not blank."""
        value = self.optional_identifier()
        if value is None:
            raise self.error("is required" if self.missing else "must not be empty")
        return value

    def choice(self, allowed: Collection[str]) -> str:
        """A string that must be one of ``allowed``."""
        value = self.string()
        if value not in allowed:
            raise self.error(f"must be one of {', '.join(sorted(allowed))}")
        return value

    def optional_number(self) -> float | None:
        """A finite JSON number (not a boolean), or ``None`` if missing."""
        if self.missing:
            return None
        value = self._value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"must be a number, got {_json_kind(value)}")
        if not math.isfinite(value):
            raise self.error("must be a finite number")
        return float(value)

    def number(self) -> float:
        """A finite number that must be present."""
        value = self.optional_number()
        if value is None:
            raise self.error("is required")
        return value

    def optional_bool(self) -> bool | None:
        """A JSON boolean, or ``None`` if missing."""
        if self.missing:
            return None
        if not isinstance(self._value, bool):
            raise self.error(f"must be a boolean, got {_json_kind(self._value)}")
        return self._value

    # ------------------------------------------------------------------- durations

    # A negative offset is clamped to 0 rather than refused: it comes from clocks
    # that disagree by a little (a system message stamped before the call's start),
    # and refusing it would lose the whole transcript over it.

    def optional_duration_secs(self, scale: float = 1.0) -> float | None:
        """A call duration (``scale``: seconds per unit) in seconds; ``None`` if missing."""
        value = self.optional_number()
        if value is None:
            return None
        if value < 0:
            raise self.error("must not be negative")
        if value * scale > MAX_CALL_SECS:
            raise self.error("is longer than any call")
        return value * scale

    def offset_ms_from_secs(self) -> int:
        """Seconds since the start of the call (required) as whole milliseconds, >= 0."""
        return self._offset_ms(self.number() * 1000)

    def offset_ms_from_ms(self, call_start: datetime) -> int:
        """Milliseconds since the start of the call (required), >= 0.

        Where the unit is unconfirmed: a value too large to be an offset is read
        as an absolute unix time in milliseconds and measured from ``call_start``.
        """
        value = self.number()
        if abs(value) >= _SMALLEST_UNIX_MS:
            value -= call_start.timestamp() * 1000
        return self._offset_ms(value)

    def _offset_ms(self, value: float) -> int:
        # ±1.8e305 seconds is finite, but not once in milliseconds.
        if not math.isfinite(value) or abs(value) > MAX_CALL_SECS * 1000:
            raise self.error("is beyond the length of any call")
        return max(0, round(value))

    # ------------------------------------------------------------------ timestamps

    def optional_unix_secs(self) -> datetime | None:
        """A unix timestamp in seconds as an aware UTC datetime, ``None`` if missing."""
        value = self.optional_number()
        return None if value is None else self._from_unix(value)

    def optional_unix_ms(self) -> datetime | None:
        """A unix timestamp in milliseconds as an aware UTC datetime, ``None`` if missing."""
        value = self.optional_number()
        return None if value is None else self._from_unix(value / 1000)

    def optional_instant(self) -> datetime | None:
        """A point in time given either as ISO 8601 text or as a unix number.

        For platforms whose format is unconfirmed: a number is milliseconds when
        it is too large to be seconds (see ``_SMALLEST_UNIX_MS``), else seconds.
        ISO text without an offset is read as UTC.
        """
        if self.missing:
            return None
        if isinstance(self._value, str):
            try:
                parsed = datetime.fromisoformat(self._value)
            except ValueError:
                raise self.error("must be an ISO 8601 date and time") from None
            return self.plausible(
                parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
            )
        value = self.number()
        return self._from_unix(value / 1000 if abs(value) >= _SMALLEST_UNIX_MS else value)

    def shifted(self, instant: datetime, secs: float) -> datetime:
        """``instant`` moved by ``secs`` seconds, this field's duration (negative: earlier),
        e.g. a call's end from its start: a plausible point in time, or an error about this
        field."""
        try:
            moved = instant + timedelta(seconds=secs)
        except OverflowError:
            raise self.error(f"puts the call outside {_PLAUSIBLE}") from None
        if not EARLIEST_INSTANT <= moved <= LATEST_INSTANT:
            raise self.error(f"puts the call outside {_PLAUSIBLE}")
        return moved

    def plausible(self, instant: datetime) -> datetime:
        """``instant``, read from this field, if it is between ``EARLIEST_INSTANT`` and
        ``LATEST_INSTANT``: a call happens now, give or take a clock, and a time far from
        it would overflow date arithmetic, or be stored where it cannot be read back."""
        # Compared, never converted: astimezone on year 1 at +14:00 overflows.
        if not EARLIEST_INSTANT <= instant <= LATEST_INSTANT:
            raise self.error(f"must be within {_PLAUSIBLE}")
        return instant

    def _from_unix(self, secs: float) -> datetime:
        try:
            # Through timedelta rather than fromtimestamp: exact for every float and
            # independent of the platform's C library limits.
            instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)
        except OverflowError:
            raise self.error(f"must be within {_PLAUSIBLE}") from None
        return self.plausible(instant)


def tool_arguments(node: Node) -> dict[str, Any]:
    """A tool call's arguments, sent as a JSON object or as a JSON *string* of one.

    Lenient by design: the arguments are written by an LLM, so a string that is
    not JSON, or JSON that is not an object, is kept as ``{"_raw": <string>}``
    rather than losing the whole transcript over it.
    """
    if node.missing:
        return {}
    value = node.raw
    if isinstance(value, dict):
        return node.object()
    if not isinstance(value, str):
        raise node.error(f"must be an object or a JSON string, got {_json_kind(value)}")
    node.optional_string()  # no NUL character
    if not value.strip():
        return {}
    try:
        # orjson, as everywhere on the wire: it also refuses NaN, which JSON cannot carry.
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"_raw": value}
    if not isinstance(parsed, dict):
        return {"_raw": value}
    # Kept like an object sent as one: "\u0000" in the JSON text is a NUL once parsed.
    copied: dict[str, Any] = Node(parsed, node.path).object()
    return copied


def tool_result_text(node: Node) -> str | None:
    """What a tool answered, as text: strings as they are, other JSON serialised."""
    if node.missing:
        return None
    value = node.raw
    if isinstance(value, str):
        return node.string()  # no NUL character
    try:
        # Sorted keys: a redelivery must give identical text.
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        raise node.error("must be JSON that memstream can store") from None


class _TooDeep(Exception):
    pass


class _HoldsNul(Exception):
    pass


def _json_copy(value: Any, depth: int) -> Any:
    """A deep copy of parsed JSON (dicts, lists, scalars) at most ``depth`` levels deep,
    without a NUL character in any string or key."""
    if isinstance(value, str):
        if _NUL in value:
            raise _HoldsNul
        return value
    if isinstance(value, dict | list):
        if depth <= 0:
            raise _TooDeep
        if isinstance(value, dict):
            copied: dict[str, Any] = {}
            for key, item in value.items():
                if _NUL in key:
                    raise _HoldsNul
                copied[key] = _json_copy(item, depth - 1)
            return copied
        return [_json_copy(item, depth - 1) for item in value]
    return value
