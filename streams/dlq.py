"""Dead letters: events a projection could not handle, kept on the DLQ topic with why.

A dead letter carries the error and the original record's coordinates and bytes, so
it can be inspected and replayed once the cause is fixed. Its id derives from the
projection and the coordinates: a runner that crashes after writing it and before
committing writes the same dead letter again on restart, recognisably.
"""

from __future__ import annotations

import base64
import traceback
from dataclasses import dataclass
from typing import Any

import orjson

from schemas import derived_event_id, utc_now


@dataclass(frozen=True)
class DeadLetter:
    projection: str
    version: int
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    stage: str  # "decode" or "apply"
    error: BaseException
    attempts: int

    def encode(self) -> bytes:
        try:
            payload, encoding = self.value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(self.value).decode(), "base64"
        document: dict[str, Any] = {
            "id": str(
                derived_event_id(
                    "dlq",
                    self.projection,
                    str(self.version),
                    self.topic,
                    str(self.partition),
                    str(self.offset),
                )
            ),
            "projection": self.projection,
            "version": self.version,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "stage": self.stage,
            "error": {
                "type": type(self.error).__name__,
                "code": getattr(self.error, "code", None),
                "message": str(self.error),
                "traceback": "".join(traceback.format_exception(self.error, limit=8))[-4000:],
            },
            "attempts": self.attempts,
            "failed_at": utc_now().isoformat(),
            "payload": payload,
            "payload_encoding": encoding,
        }
        return orjson.dumps(document)


def decode(value: bytes) -> dict[str, Any]:
    """A dead letter as a dict (the DLQ tooling reads it back with this)."""
    document: dict[str, Any] = orjson.loads(value)
    return document
