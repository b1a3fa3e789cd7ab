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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from psycopg import AsyncConnection

from schemas import Event
from streams.producer import EventLog
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A decoded event with its coordinates in the log."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    event: Event


class Projection(abc.ABC):
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
    def from_settings(cls, settings: Settings) -> Self:
        """The projection as configured (e.g. which model a processor calls): what the
        `memstream` command starts. A projection with nothing to configure is ``cls()``."""
        return cls()

    @abc.abstractmethod
    def schema_sql(self) -> str:
        """DDL for the tables, unqualified and idempotent (``CREATE ... IF NOT EXISTS``)."""

    async def open(self, log: EventLog) -> None:  # noqa: B027 - optional hook
        """Called once the runtime has started, with its producer (acks=all).

        A processor that emits events (extraction, embeddings, summaries) keeps ``log``
        and appends its output from `apply`, before the checkpoint commits; a read model
        ignores it. The runtime owns the producer and closes it.
        """

    def prepare(self, records: Sequence[LogRecord]) -> Any:
        """Work on a batch outside the transaction (folding, building rows, calling a
        model); feeds `apply`. No database I/O.

        The runtime calls it in its fetch stage, so it runs while the previous batch's
        transaction waits on PostgreSQL. Its result must depend only on `records`. The
        default passes the records through.
        """
        return records

    async def caught_up(self, conn: AsyncConnection[Any]) -> None:  # noqa: B027 - optional hook
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
