"""PostgreSQL ``COPY ... FROM STDIN`` payloads built ahead in Python: text and binary format.

Projections build bulk payloads in ``prepare`` (the runtime's fetch stage, which overlaps
the previous transaction) so that ``apply`` only ships bytes with one ``copy.write``.
Text format: fields separated by a tab, rows ended by a newline, NULL as ``\\N``, and
backslash, tab, newline and carriage return escaped with a backslash
(https://www.postgresql.org/docs/current/sql-copy.html).

Binary format (``WITH (FORMAT BINARY)``), for rows whose values cost more to print and
parse than to pack, such as vectors: :data:`BINARY_HEADER`, then per row an int16 field
count and per field an int32 byte length and the type's binary ("send") form, then
:data:`BINARY_TRAILER`. All integers are big-endian.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

COPY_NULL = "\\N"

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_escape(text: str) -> str:
    """A text value escaped for the COPY text format."""
    return text.translate(_ESCAPES)


#: Signature, flags (no OIDs) and header extension length (none) of a binary COPY.
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
#: A field count of -1 ends a binary COPY.
BINARY_TRAILER = struct.pack("!h", -1)

_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FIELD_COUNT = struct.Struct("!h")
_LENGTH = struct.Struct("!i")
_INT4 = struct.Struct("!ii")  # length 4, value
_INT8 = struct.Struct("!iq")  # length 8, value


def binary_row_start(fields: int) -> bytes:
    """The start of a binary COPY row of ``fields`` fields."""
    return _FIELD_COUNT.pack(fields)


def binary_bytes(value: bytes) -> bytes:
    """A ``text`` (UTF-8), ``bytea`` or ``uuid`` (16 bytes) field, or any type's binary form."""
    return _LENGTH.pack(len(value)) + value


def binary_int4(value: int) -> bytes:
    """An ``integer`` field."""
    return _INT4.pack(4, value)


def binary_timestamptz(value: datetime) -> bytes:
    """A ``timestamptz`` field (``value`` must be aware): microseconds since 2000-01-01 UTC."""
    return _INT8.pack(8, (value - _POSTGRES_EPOCH) // _MICROSECOND)
