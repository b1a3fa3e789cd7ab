"""The contract between the projection runtime and a read model.

A projection declares the topics it reads and the tables it owns, creates those
tables from its DDL, and applies batches of decoded records. The runtime runs every
``apply`` inside ONE PostgreSQL transaction together with the checkpoint update, with
``search_path`` set to the projection version's own schema, so projection SQL uses
unqualified table names and a rebuild (version N+1) writes to fresh tables while
version N keeps serving.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, Self, cast

from psycopg import AsyncConnection

# typing_extensions: a type variable with a default (PEP 696) is Python 3.13's typing.
from typing_extensions import TypeVar

from schemas import Event, decode_event
from streams.producer import EventLog
from streams.settings import StreamsSettings


class Decoded(Protocol):
    """What the runtime reads of a decoded record, for its log lines: an event's envelope
    has it, and so has an audit entry (``streams.audit``), the one record a projection
    reads that is not an event."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def correlation_id(self) -> str | None: ...


#: What a projection's records decode to: events, unless it says otherwise.
R = TypeVar("R", bound=Decoded, default=Event)


@dataclass(frozen=True, slots=True)
class LogRecord(Generic[R]):
    """A decoded event (or the record a projection reads instead) with its coordinates
    in the log."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    event: R


class Projection(abc.ABC, Generic[R]):
    """A read model in PostgreSQL, built only from the log."""

    #: Unique name; also the schema of its read views (``<name>.<table>``).
    name: ClassVar[str]
    #: Logical topics consumed (see ``streams.topics``).
    topics: ClassVar[tuple[str, ...]]
    #: Tables exposed through the read views; readers query ``<name>.<table>``.
    tables: ClassVar[tuple[str, ...]]
    #: Logical topics a processor appends derived events to (none for a read model). Each
    #: version stamps its lineage on them (streams.lineage), so versions that derive
    #: differently (another extractor, another embedding model) can run side by side.
    produces: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, settings: StreamsSettings) -> Self:
        """The projection as configured (e.g. which model a processor calls): what the
        `memstream` command starts. A projection with nothing to configure is ``cls()``."""
        return cls()

    @abc.abstractmethod
    def schema_sql(self) -> str:
        """DDL for the tables, unqualified and idempotent (``CREATE ... IF NOT EXISTS``)."""

    async def open(self, log: EventLog) -> None:
        """Called once the runtime has started, with its producer (acks=all).

        A processor that emits events (extraction, embeddings, summaries) keeps ``log``
        and appends its output from `apply`, before the checkpoint commits; a read model
        ignores it. The runtime owns the producer and closes it.
        """

    def decode(self, value: bytes) -> R:
        """A record of the projection's topics, decoded; raises ``EventDecodeError`` when it
        does not decode (the runtime dead-letters it). Every projection reads events
        (``decode_event``) but the audit's, whose records are not events."""
        return cast(R, decode_event(value))

    def prepare(self, records: Sequence[LogRecord[R]]) -> Any:
        """Work on a batch outside the transaction (folding, building rows, calling a
        model); feeds `apply`. No database I/O.

        The runtime calls it in its fetch stage, so it runs while the previous batch's
        transaction waits on PostgreSQL. Its result must depend only on `records`. The
        default passes the records through.
        """
        return records

    async def caught_up(self, conn: AsyncConnection[Any]) -> None:
        """Called after a batch that left every assigned partition at the log end (as far
        as the last fetch knew), or else when the runner next finds nothing to fetch; in a
        transaction of its own, outside any batch. Also once after the runner starts.

        For work worth doing once a rebuild has caught up rather than on every insert
        (building an index in one go). It must not change what the read model contains:
        readers and `apply` get the same answers with or without it. The runtime may call
        it often while the projection keeps up (after every batch), so it should return at
        once when there is nothing to do. Raising rolls it back; it is called again after
        the next batch.
        """

    @abc.abstractmethod
    async def apply(self, conn: AsyncConnection[Any], prepared: Any) -> None:
        """Apply a prepared batch (records in log order per partition) in the runtime's
        transaction.

        `prepared` is what `prepare` returned for the batch's records. Must not commit or
        roll back. May see an event it has applied before only if the same event was
        appended twice (a redelivered webhook): effects must be idempotent per event id.
        Raising rolls the whole batch back; the runtime retries it and, if it keeps
        failing, isolates the failing event and sends it to the DLQ.
        """


def version_schema(projection: str, version: int) -> str:
    """The PostgreSQL schema holding one version's tables."""
    return f"{projection}_v{version}"


def group_id(topic_prefix: str, projection: str, version: int) -> str:
    """The Kafka consumer group of one projection version."""
    return f"{topic_prefix}.projection.{projection}.v{version}"
