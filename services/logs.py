"""Logging for memstream's processes: one JSON object a line, or plain text for a terminal.

Context travels as ``extra``: ``logger.info("accepted", extra={"conversation_id": ...})``
puts ``conversation_id`` into the JSON object as a field of its own, so a log
shipper can follow one call across the services without parsing messages.
:func:`call_fields` builds that ``extra`` for a line about a call: the services' lines
about a specific call all carry ``tenant``, ``subject_hash``, ``conversation_id`` and
``event_id`` under those names.

A subject names a person (``tenant/+14155550123``, ``tenant/<user id>``), so no line
carries it: :func:`subject_hash` is its keyed hash (HMAC-SHA256 with
``MEMSTREAM_LOG_HASH_KEY``, 16 hex characters), the same in every process with the
same key. ``memstream log-hash SUBJECT`` computes it to find a caller's lines.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas import Event

__all__ = ["JsonFormatter", "call_fields", "configure_logging", "subject_hash"]

# Without MEMSTREAM_LOG_HASH_KEY the hash is keyed with this built-in constant: still no
# number in a line, but anyone with memstream's source can test a guessed number against
# it (phone numbers are few enough to try them all). Only a pseudonym: set the key.
_BUILT_IN_HASH_KEY = b"memstream log pseudonym; set MEMSTREAM_LOG_HASH_KEY"
_hash_key = _BUILT_IN_HASH_KEY

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, fmt: str, hash_key: str | None = None) -> None:
    """Send every logger to stderr at ``level``, as ``fmt`` ("json" or "text"), with
    subjects hashed with ``hash_key`` (the built-in key when None)."""
    global _hash_key
    _hash_key = hash_key.encode() if hash_key else _BUILT_IN_HASH_KEY
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def subject_hash(subject: str) -> str:
    """What log lines carry instead of ``subject``: the first 16 hex characters of
    HMAC-SHA256 keyed with the log hash key (see :func:`configure_logging`)."""
    return hmac.new(_hash_key, subject.encode(), hashlib.sha256).hexdigest()[:16]


def call_fields(
    events: Sequence[Event] = (),
    *,
    tenant: str | None = None,
    subject: str | None = None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """``extra`` for a log line about one call: ``tenant``, ``subject_hash`` (of ``subject``:
    never the subject itself), ``conversation_id`` and ``event_id``, always all four (null
    when unknown: one schema for every line).

    Taken from ``events`` — the first one's, as one request's events are about one
    call; ``event_ids`` lists them all when there are several — unless given by keyword
    (what a request knows before it has events, or the platform's own call id).
    """
    first = events[0] if events else None
    if conversation_id is None and first is not None:
        # The envelope's correlation id is the conversation; a producer that left it out
        # may still name the conversation in the payload (conversation.started/ended).
        conversation_id = first.correlation_id or getattr(first.data, "conversation_id", None)
    if subject is None and first is not None:
        subject = first.subject
    fields: dict[str, Any] = {
        "tenant": tenant if tenant is not None else first and first.tenant,
        "subject_hash": subject_hash(subject) if subject is not None else None,
        "conversation_id": conversation_id,
        "event_id": str(first.id) if first else None,
    }
    if len(events) > 1:
        fields["event_ids"] = [str(event.id) for event in events]
    return fields
