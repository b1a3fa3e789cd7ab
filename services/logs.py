"""Logging for memstream's processes: one JSON object a line, or plain text for a terminal.

Context travels as ``extra``: ``logger.info("accepted", extra={"conversation_id": ...})``
puts ``conversation_id`` into the JSON object as a field of its own, so a log
shipper can follow one call across the services without parsing messages.
:func:`call_fields` builds that ``extra`` for a line about a call: the services' lines
about a specific call all carry ``tenant``, ``subject``, ``conversation_id`` and
``event_id`` under those names.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas import Event

__all__ = ["JsonFormatter", "call_fields", "configure_logging"]

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


def configure_logging(level: str, fmt: str) -> None:
    """Send every logger to stderr at ``level``, as ``fmt`` ("json" or "text")."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def call_fields(
    events: Sequence[Event] = (),
    *,
    tenant: str | None = None,
    subject: str | None = None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """``extra`` for a log line about one call: ``tenant``, ``subject``, ``conversation_id``
    and ``event_id``, always all four (null when unknown: one schema for every line).

    Taken from ``events`` — the first one's, as one request's events are about one
    call; ``event_ids`` lists them all when there are several — unless given by keyword
    (what a request knows before it has events, or the platform's own call id).
    """
    first = events[0] if events else None
    if conversation_id is None and first is not None:
        # The envelope's correlation id is the conversation; a producer that left it out
        # may still name the conversation in the payload (conversation.started/ended).
        conversation_id = first.correlation_id or getattr(first.data, "conversation_id", None)
    fields: dict[str, Any] = {
        "tenant": tenant if tenant is not None else first and first.tenant,
        "subject": subject if subject is not None else first and first.subject,
        "conversation_id": conversation_id,
        "event_id": str(first.id) if first else None,
    }
    if len(events) > 1:
        fields["event_ids"] = [str(event.id) for event in events]
    return fields
