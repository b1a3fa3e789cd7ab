"""The ingest service's client errors: one status, one machine-readable code, one message."""

from __future__ import annotations

from typing import Any


class IngestError(Exception):
    """A request is refused; nothing was appended."""

    def __init__(self, status: int, code: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.path = path

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.path is not None:
            error["path"] = self.path
        return {"error": error}
