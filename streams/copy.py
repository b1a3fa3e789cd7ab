"""PostgreSQL ``COPY ... FROM STDIN`` text format, for payloads built ahead in Python.

Projections build bulk payloads in ``prepare`` (the runtime's fetch stage, which overlaps
the previous transaction) so that ``apply`` only ships bytes with one ``copy.write``.
Text format: fields separated by a tab, rows ended by a newline, NULL as ``\\N``, and
backslash, tab, newline and carriage return escaped with a backslash
(https://www.postgresql.org/docs/current/sql-copy.html).
"""

from __future__ import annotations

COPY_NULL = "\\N"

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_escape(text: str) -> str:
    """A text value escaped for the COPY text format."""
    return text.translate(_ESCAPES)
