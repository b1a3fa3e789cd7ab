"""The ingest service's client errors (see :class:`services.errors.ApiError`)."""

from __future__ import annotations

from services.errors import ApiError

__all__ = ["IngestError"]


class IngestError(ApiError):
    """A request is refused; nothing was appended."""
