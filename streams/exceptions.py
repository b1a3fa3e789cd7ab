"""Errors raised by the log layer, each carrying what the caller needs to act on it."""

from __future__ import annotations


class StreamsError(Exception):
    """Base class of the errors raised by ``streams``."""


class ConfigurationError(StreamsError):
    """A ``MEMSTREAM_*`` setting is missing or invalid."""


class BrokerUnavailable(StreamsError):
    """The Kafka broker could not be reached or did not acknowledge in time.

    Nothing is known to be appended when this is raised for an append: the caller
    must treat the append as not done (e.g. answer 503 so the platform retries).
    """

    def __init__(self, bootstrap: str, detail: str) -> None:
        super().__init__(f"Kafka broker at {bootstrap} is unreachable: {detail}")
        self.bootstrap = bootstrap
        self.detail = detail


class RecordTooLarge(StreamsError):
    """An event is larger than a record of its topic may be (``max.message.bytes``).

    Checked before anything of the append is sent, so none of its events was appended;
    unlike :class:`BrokerUnavailable` it is the caller's data, not an outage: sending
    the same events again cannot succeed (answer 413, not 503).
    """

    def __init__(self, topic: str, size: int, limit: int | None) -> None:
        """``limit`` is None when the broker refused the record (a topic created elsewhere
        with a smaller ``max.message.bytes``)."""
        over = f"its {limit}-byte limit" if limit is not None else "the broker's limit"
        super().__init__(f"a record of {size} bytes for {topic} is over {over}")
        self.topic = topic
        self.size = size
        self.limit = limit


class DatabaseUnavailable(StreamsError):
    """PostgreSQL could not be reached; no transaction was committed."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"PostgreSQL at {redact_url(url)} is unreachable: {detail}")
        self.url = redact_url(url)
        self.detail = detail


def redact_url(url: str) -> str:
    """The URL with any password replaced, for error messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


class AuditUnavailable(StreamsError):
    """An audit entry could not be recorded: the audit buffer stayed full (the broker is
    down or slow) or the trail is closed. The read it records must not be answered."""
