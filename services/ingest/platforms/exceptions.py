"""Errors raised while normalising a platform's webhook body into memstream events."""

from __future__ import annotations

__all__ = ["PayloadError"]


class PayloadError(ValueError):
    """A webhook body is valid JSON but not of the shape memstream needs.

    ``path`` names the offending field the way a person would write it, e.g.
    ``data.transcript[3].time_in_call_secs``; the empty path means the body itself.
    The HTTP layer answers 422 with both. ``message`` never quotes the field's
    value: bodies hold personal data and errors end up in logs.
    """

    code = "invalid_payload"
    """Machine-readable cause, for the error body and the rejection counter."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<body>'}: {message}")
        self.path = path
        self.message = message

    def __reduce__(self) -> tuple[type[PayloadError], tuple[str, str]]:
        # The default pickling passes str(self) as the only argument.
        return (type(self), (self.path, self.message))
