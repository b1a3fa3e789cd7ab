"""The projection runtime: a Kafka consumer group feeding ONE PostgreSQL transaction per batch.

Two stages run concurrently. The fetch stage takes a batch from ``getmany``, decodes it
and lets the projection ``prepare`` it (pure Python, in a worker thread). The
transaction stage then does, for that batch, in this order:

1. BEGIN; lock the checkpoint rows of the batch's partitions and set aside the records
   below them (already applied: a redelivery after a crash or a rebalance);
2. a record that did not decode is poison at once (decoding is deterministic);
3. ``projection.apply(prepared)`` in the same transaction;
4. write poison records to the DLQ and wait for the broker's acknowledgement;
5. advance the checkpoints past the batch;
6. COMMIT; then, for external tooling only, commit the offsets to Kafka.

While step 3 of one batch waits on PostgreSQL, the next batch is being decoded and
prepared: Python and the database work on different cores. A crash anywhere before 6
rolls the transaction back and the batch is fetched again from the checkpoints; a crash
after 6 finds the checkpoints already advanced. Either way each event's effect lands
exactly once. On partition assignment the consumer seeks to the checkpoints, never to
Kafka's committed offsets.

When ``apply`` raises, the batch is retried with exponential backoff; if it still
fails, it is replayed event by event (each in a savepoint), every failing event retried
with backoff and then dead-lettered, so one poison event never blocks its partition.
Database connection errors are not poison: the runner reconnects and retries forever
(with backoff, logging), because dead-lettering healthy events during an outage would
lose them from the read model. A DLQ write that fails rolls the batch back too.

An event of an erased subject (``SubjectErased``: its key was destroyed) is neither
applied nor dead-lettered: the checkpoint passes it, counted as ``erased``. Decoding needs
the subject keys (``streams.subject_keys``); while their database is unreachable the
fetch stage retries the batch's decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from psycopg import AsyncConnection

from schemas import EventDecodeError, SubjectErased
from streams import checkpoints, database, lineage, subject_keys, versions
from streams.backoff import Backoff
from streams.dlq import DeadLetter
from streams.exceptions import BrokerUnavailable, DatabaseUnavailable
from streams.metrics import (
    DLQ_EVENTS,
    PROJECTED_EVENTS,
    PROJECTION_BATCH_SECONDS,
    PROJECTION_LAG,
    PROJECTION_LAST_ERROR,
    PROJECTION_RETRIES,
    PROJECTION_VERSION_INFO,
)
from streams.offsets import partitions_of, standalone_consumer
from streams.producer import EventLog
from streams.projection import Decoded, LogRecord, Projection, group_id, version_schema
from streams.settings import StreamsSettings
from streams.topics import Topics, ensure_topics

logger = logging.getLogger(__name__)

# Caps of the backoff between retries: of a batch or an event, and while the database or
# the broker is unreachable (streams.backoff; base MEMSTREAM_RETRY_BACKOFF_MS).
_RETRY_CAP_S = 5.0
_OUTAGE_CAP_S = 10.0

# Kafka's committed offsets are informational (lag tools); committed at most this often.
_KAFKA_COMMIT_INTERVAL = 1.0

# The steps of the batch sequence at which a fault can be injected (tests crash there).
AFTER_FETCH = "after_fetch"
AFTER_APPLY = "after_apply"
AFTER_CHECKPOINT = "after_checkpoint"
AFTER_COMMIT = "after_commit"
FAULT_POINTS = (AFTER_FETCH, AFTER_APPLY, AFTER_CHECKPOINT, AFTER_COMMIT)

FaultHook = Callable[[str], None]

# Errors that say "the database is unreachable", not "this event is bad".
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.errors.AdminShutdown,
)
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.LockNotAvailable,
)


def _of_the_database(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a projection's apply, is the database's state (retry the
    batch until it answers) rather than the events' (retry, then isolate the poison event).
    An OperationalError counts as the database's only with a SQLSTATE that says so
    (``database.unreachable``): 54000 program_limit_exceeded, a value too long for an
    index, is an OperationalError too, and retrying it as an outage stalled every tenant's
    events behind one event."""
    return isinstance(exc, _TRANSIENT_ERRORS) or database.unreachable(exc)


@dataclass(frozen=True, slots=True)
class _Batch:
    """A fetched batch: its records, their decoded events (or decode errors; None for a
    record of a lineage this version does not follow) aligned with them, the decodable
    ones as LogRecords, and what the projection prepared from those."""

    messages: list[Any]
    decoded: list[Decoded | EventDecodeError | None]
    records: list[LogRecord[Any]]
    prepared: Any


@dataclass(frozen=True, slots=True)
class _PrepareFailed:
    """`prepare` raised: handled like a failing `apply` (retries, then event by event)."""

    error: Exception


def _prepare(projection: Projection[Any], records: Sequence[LogRecord[Any]]) -> Any:
    try:
        return projection.prepare(records)
    except Exception as exc:
        return _PrepareFailed(exc)


def tune_gc_for_projecting() -> None:
    """Process-wide garbage-collector settings for a process that runs projections.

    Decoding a batch allocates hundreds of thousands of short-lived objects. With
    CPython's default thresholds the collector runs every 700 allocations and its older
    generations keep re-walking every long-lived object (modules, models, clients):
    measured here, it doubled the runner's CPU per event. Freezing what start-up built
    and collecting the young generation less often removes that; memory stays bounded
    because a batch's garbage is acyclic and freed by reference counting.
    Called by the `memstream` command before it starts projections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


class ApplyFailed(Exception):
    """``Projection.apply`` raised on a batch; the transaction was rolled back."""


class ProjectionRunner:
    """Runs one version of one projection as a member of its consumer group."""

    def __init__(
        self,
        projection: Projection[Any],
        settings: StreamsSettings,
        *,
        version: int = 1,
        start_at: datetime | None = None,
        config: Mapping[str, Any] | None = None,
        fault: FaultHook | None = None,
    ) -> None:
        """`config` is recorded if this starts a new version (streams.versions.config);
        the version's recorded config is what the runner follows."""
        self.projection = projection
        self.settings = settings
        self.version = version
        self.start_at = start_at
        self.config: dict[str, Any] = dict(config or {})
        self._follows = lineage.Follows({}, {})
        self.schema = version_schema(projection.name, version)
        self.group_id = group_id(settings.topic_prefix, projection.name, version)
        self._fault = fault or (lambda _step: None)
        self._topics = Topics(settings.topic_prefix)
        self._database_url = settings.require_database()
        self._conn: AsyncConnection[Any] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: EventLog | None = None
        self._stopping = asyncio.Event()
        self._kafka_committed_at = 0.0
        self._processing = asyncio.Lock()
        # Projection.caught_up is due once the runner is caught up (again).
        self._caught_up_due = True
        self._labels = (projection.name, str(version))
        self._labels_int = (projection.name, version)
        #: Next offset to project per assigned partition, as far as this runner knows.
        self.positions: dict[tuple[str, int], int] = {}
        #: Events not yet projected per assigned partition (also the lag gauge).
        self.lag: dict[tuple[str, int], int] = {}
        self.state = "created"

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the version's tables, join the group. Raises *Unavailable errors."""
        self._conn = await self._connect()
        # Every process that decodes events has the personal data codec (once, from its
        # settings); a master key that does not open this database's keys fails here.
        await asyncio.to_thread(subject_keys.install_personal_codec, self.settings, check=True)
        state = await versions.register(
            self._conn, self.projection, self.version, self.start_at, self.config
        )
        PROJECTION_VERSION_INFO.labels(*self._labels, state).set(1)
        # The recorded config wins; what it lacks (a version registered before configs
        # recorded lineage) comes from the config this runner was given.
        recorded = await versions.config(self._conn, self.projection.name, self.version)
        self.config = {**self.config, **recorded}
        self._follows = lineage.Follows(
            lineage.follows_of(self.config),
            {t: self._topics.name(t) for t in self.projection.topics},
        )
        await ensure_topics(self.settings)
        # A new version's checkpoints exist before its consumer fetches anything: a batch
        # fetched before the first seek then finds them (and skips what precedes a
        # `start_at`) instead of creating them at the fetch position.
        names = [self._topics.name(t) for t in self.projection.topics]
        async with standalone_consumer(self.settings) as lookup:
            await self._start_checkpoints(
                self._conn, lookup, await partitions_of(self.settings, names)
            )
        # A processor's output carries this version's lineage (streams.lineage).
        stamp = lineage.stamp(*self._labels_int, self.projection.produces)
        self._dlq = EventLog(self.settings, headers=stamp)
        await self._dlq.start()
        # The same producer serves the DLQ and a processor's own output.
        await self.projection.open(self._dlq)
        bootstrap = self.settings.require_kafka()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.group_id,
            client_id=f"memstream-{self.projection.name}-v{self.version}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            **self.settings.kafka_options(),
        )
        try:
            await self._consumer.start()
        except (KafkaError, OSError) as exc:
            await self.close()
            raise BrokerUnavailable(bootstrap, f"{type(exc).__name__}: {exc}") from exc
        self._consumer.subscribe(
            topics=[self._topics.name(t) for t in self.projection.topics],
            listener=_Rebalance(self),
        )
        self.state = "running"
        logger.info("projection %s v%s joined group %s", *self._labels, self.group_id)

    @property
    def is_caught_up(self) -> bool:
        """Whether this runner holds partitions and has committed each up to the high
        watermark its last fetch saw (its own view; `versions.lag` is the log's)."""
        return self._caught_up()

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return."""
        self._stopping.set()

    async def close(self) -> None:
        """Leave the group and release connections (after `run` returned)."""
        was_running, self.state = self.state == "running", "stopped"
        if self._consumer is not None and was_running:
            await self._commit_kafka_offsets()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        if self._dlq is not None:
            dlq, self._dlq = self._dlq, None
            await dlq.stop()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
        for topic, partition in list(self.lag):
            PROJECTION_LAG.remove(*self._labels, topic, str(partition))
        self.lag.clear()

    async def run(self) -> None:
        """Project until `stop()`; then close.

        Two stages overlap: while one batch's transaction waits on PostgreSQL, the next
        batch is fetched and decoded (Python CPU and database CPU on different cores).
        A decoded batch that is never committed (stop, crash) is simply fetched again
        from the checkpoints.
        """
        if self._consumer is None:
            await self.start()
        ready: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=1)
        fetcher = asyncio.create_task(self._fetch(ready), name=f"fetch-{self.group_id}")
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                next_batch = asyncio.create_task(ready.get())
                await asyncio.wait(
                    {next_batch, fetcher, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if not next_batch.done():
                    next_batch.cancel()
                    if fetcher.done():
                        fetcher.result()  # re-raise what stopped the fetch stage
                    continue
                async with self._processing:
                    await self._process(next_batch.result())
                    self._caught_up_due = True
                    self._update_lag()
                    await self._maybe_call_caught_up()
        finally:
            fetcher.cancel()
            stopping.cancel()
            await asyncio.gather(fetcher, stopping, return_exceptions=True)
            await self.close()

    async def _fetch(self, ready: asyncio.Queue[_Batch]) -> None:
        """Fetch and decode batches ahead of the transactions (the first stage of `run`)."""
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            fetched = await consumer.getmany(
                timeout_ms=self.settings.batch_timeout_ms,
                max_records=self.settings.batch_max_records,
            )
            if not fetched:
                self._update_lag()
                # Idle: the last batch may have been applied before every partition's
                # high watermark was known.
                if self._caught_up_due and self._caught_up():
                    async with self._processing:
                        await self._maybe_call_caught_up()
                continue
            self._fault(AFTER_FETCH)
            messages = [m for partition in fetched.values() for m in partition]
            # In a worker thread: the event loop stays free to resume the transaction in
            # flight as soon as PostgreSQL answers (the GIL hands over within 5 ms).
            attempt = 0
            while True:
                try:
                    batch = await asyncio.to_thread(self._decode_and_prepare, messages)
                    break
                except DatabaseUnavailable as exc:
                    # The subject keys could not be read: not the events' fault.
                    attempt += 1
                    PROJECTION_RETRIES.labels(*self._labels, "database").inc()
                    logger.error("projection %s v%s: %s; retrying", *self._labels, exc)
                    await self._backoff(attempt, cap=_OUTAGE_CAP_S)
                    if self._stopping.is_set():
                        return
            await ready.put(batch)

    def _decode_and_prepare(self, messages: list[Any]) -> _Batch:
        decoded: list[Decoded | EventDecodeError | None] = []
        records: list[LogRecord[Any]] = []
        follows = self._follows
        # The batch's subject keys in one query, not one per subject not yet cached.
        subject_keys.prefetch_keys(m.value for m in messages)
        for m in messages:
            if follows and not follows.accepts(m.topic, m.headers):
                decoded.append(None)  # another lineage's: checkpointed past, not applied
                continue
            try:
                event = self.projection.decode(m.value)
                records.append(LogRecord(m.topic, m.partition, m.offset, m.timestamp, event))
                decoded.append(event)
            except EventDecodeError as exc:
                decoded.append(exc)
        return _Batch(messages, decoded, records, _prepare(self.projection, records))

    # -- one batch --------------------------------------------------------------------

    async def _process(self, batch: _Batch) -> None:
        began = time.perf_counter()
        isolate = False  # True once the batch as a whole kept failing: event by event
        attempt = 0
        while True:
            try:
                await self._commit_batch(batch, isolate=isolate)
                break
            except ApplyFailed as exc:
                attempt += 1
                await self._record_error(f"batch failed (attempt {attempt}): {exc}")
                if attempt > self.settings.poison_retries:
                    logger.warning(
                        "projection %s v%s: batch keeps failing (%s); isolating the poison event",
                        *self._labels,
                        exc.__cause__,
                    )
                    isolate = True
                    continue
                PROJECTION_RETRIES.labels(*self._labels, "apply").inc()
                await self._backoff(attempt)
            except (*_CONNECTION_ERRORS, *_TRANSIENT_ERRORS) as exc:
                await self._recover(exc)
            except BrokerUnavailable as exc:
                # A dead letter could not be written, so the batch rolled back; it is redone
                # once the broker answers (the checkpoint never passes an unwritten letter).
                logger.error("projection %s v%s: cannot write to the DLQ: %s", *self._labels, exc)
                PROJECTION_RETRIES.labels(*self._labels, "broker").inc()
                await self._backoff(2, cap=_OUTAGE_CAP_S)
                if self._stopping.is_set():
                    raise
        PROJECTION_BATCH_SECONDS.labels(*self._labels).observe(time.perf_counter() - began)

    async def _commit_batch(self, batch: _Batch, *, isolate: bool) -> None:
        messages = batch.messages
        conn = self._conn
        assert conn is not None
        partitions = {(m.topic, m.partition) for m in messages}
        applied = skipped = other = erased = 0
        async with conn.transaction():
            # 1. Lock our checkpoints; what lies below them is already in the read model.
            #    (The connection's search_path is the version's schema: see _connect.)
            done = await checkpoints.lock(conn, self.projection.name, self.version, partitions)
            # 2. Decoded in the fetch stage. A record that does not decode never will:
            #    it is poison at once.
            dead: list[DeadLetter] = []
            skipped = other = 0
            for m, event in zip(messages, batch.decoded, strict=True):
                if m.offset < done[(m.topic, m.partition)]:
                    skipped += 1
                elif event is None:
                    other += 1
                elif isinstance(event, SubjectErased):
                    erased += 1  # erased on purpose: passed, never dead-lettered
                elif isinstance(event, EventDecodeError):
                    dead.append(self._dead_letter(m, "decode", event, attempts=1))
            records, prepared = batch.records, batch.prepared
            if skipped:
                # Rare (a redelivery after a crash or a rebalance): prepare what is left,
                # off the event loop (a processor's prepare may wait on a remote model).
                records = [r for r in records if r.offset >= done[(r.topic, r.partition)]]
                prepared = await asyncio.to_thread(_prepare, self.projection, records)

            # 3. Apply, in this transaction.
            if isolate:
                applied, failed = await self._apply_one_by_one(conn, records)
                dead.extend(
                    self._dead_letter(self._message_of(messages, r), "apply", e, attempts=n)
                    for r, e, n in failed
                )
            else:
                try:
                    if isinstance(prepared, _PrepareFailed):
                        raise prepared.error
                    await self.projection.apply(conn, prepared)
                except Exception as exc:
                    if _of_the_database(exc):
                        raise
                    raise ApplyFailed(str(exc)) from exc
                applied = len(records)
            self._fault(AFTER_APPLY)

            # 4. Dead letters are durable on the DLQ topic before the checkpoint passes them.
            for letter in dead:
                await self._send_dead_letter(letter)

            # 5. Advance the checkpoints past everything fetched.
            next_offsets: dict[tuple[str, int], int] = {}
            for m in messages:
                tp = (m.topic, m.partition)
                next_offsets[tp] = max(next_offsets.get(tp, 0), m.offset + 1)
            await checkpoints.advance(conn, self.projection.name, self.version, next_offsets)
            self._fault(AFTER_CHECKPOINT)
        # 6. Committed.
        self._fault(AFTER_COMMIT)
        self.positions.update(next_offsets)
        PROJECTED_EVENTS.labels(*self._labels, "applied").inc(applied)
        PROJECTED_EVENTS.labels(*self._labels, "dead_lettered").inc(len(dead))
        PROJECTED_EVENTS.labels(*self._labels, "skipped").inc(skipped)
        PROJECTED_EVENTS.labels(*self._labels, "other_lineage").inc(other)
        PROJECTED_EVENTS.labels(*self._labels, "erased").inc(erased)
        if dead:
            await self._record_error(
                f"{len(dead)} event(s) dead-lettered; last: {dead[-1].topic}"
                f"[{dead[-1].partition}]@{dead[-1].offset}: {dead[-1].error}"
            )
        if time.monotonic() - self._kafka_committed_at >= _KAFKA_COMMIT_INTERVAL:
            await self._commit_kafka_offsets()

    async def _apply_one_by_one(
        self, conn: AsyncConnection[Any], records: Sequence[LogRecord[Any]]
    ) -> tuple[int, list[tuple[LogRecord[Any], Exception, int]]]:
        applied = 0
        failed: list[tuple[LogRecord[Any], Exception, int]] = []
        for record in records:
            attempts = 0
            while True:
                attempts += 1
                try:
                    prepared = await asyncio.to_thread(self.projection.prepare, [record])
                    async with conn.transaction():  # a savepoint: undo only this event
                        await self.projection.apply(conn, prepared)
                    applied += 1
                    break
                except Exception as exc:
                    if _of_the_database(exc):
                        raise
                    if attempts > self.settings.poison_retries:
                        event = record.event
                        logger.error(
                            "projection %s v%s: %s@%d:%d (%s %s) failed %d times: %s",
                            *self._labels,
                            record.topic,
                            record.partition,
                            record.offset,
                            event.type,
                            event.id,
                            attempts,
                            exc,
                            # No subject: it names a person, and its keyed hash is the
                            # services' (services/logs.py). The event id finds it in the
                            # DLQ (`memstream dlq show`).
                            extra={
                                "projection": self.projection.name,
                                "version": self.version,
                                "tenant": event.tenant,
                                "event_id": str(event.id),
                                "event_type": event.type,
                                "conversation_id": event.correlation_id,
                            },
                        )
                        failed.append((record, exc, attempts))
                        break
                    PROJECTION_RETRIES.labels(*self._labels, "event").inc()
                    await self._backoff(attempts)
        return applied, failed

    # -- helpers ----------------------------------------------------------------------

    def _dead_letter(
        self, message: Any, stage: str, error: BaseException, attempts: int
    ) -> DeadLetter:
        DLQ_EVENTS.labels(*self._labels, stage).inc()
        return DeadLetter(
            projection=self.projection.name,
            version=self.version,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=message.timestamp,
            key=message.key,
            value=message.value,
            stage=stage,
            error=error,
            attempts=attempts,
        )

    @staticmethod
    def _message_of(messages: Sequence[Any], record: LogRecord[Any]) -> Any:
        for m in messages:
            if (
                m.topic == record.topic
                and m.partition == record.partition
                and m.offset == record.offset
            ):
                return m
        raise LookupError(record)

    async def _send_dead_letter(self, letter: DeadLetter) -> None:
        assert self._dlq is not None
        headers = [("projection", letter.projection.encode()), ("stage", letter.stage.encode())]
        # BrokerUnavailable propagates: the transaction rolls back and the batch is redone.
        await self._dlq.append_raw(self._topics.dlq, letter.key, letter.encode(), headers)

    async def _record_error(self, message: str) -> None:
        """Keep the latest error on the version's registry row (`projections status`) and
        in a gauge. Best effort: it must never turn a handled error into a crash."""
        PROJECTION_LAST_ERROR.labels(*self._labels).set_to_current_time()
        conn = self._conn
        if conn is None or conn.closed:
            return
        try:
            await conn.execute(
                "UPDATE memstream.projection_versions SET last_error = %s, last_error_at = now()"
                " WHERE projection = %s AND version = %s",
                [message[:2000], self.projection.name, self.version],
            )
        except psycopg.Error as exc:
            logger.debug("could not record the error: %s", exc)

    async def _commit_kafka_offsets(self) -> None:
        """Tell Kafka how far we are, for external lag tools only (our checkpoints are the
        truth), so at most once per _KAFKA_COMMIT_INTERVAL rather than once per batch."""
        consumer = self._consumer
        assert consumer is not None
        self._kafka_committed_at = time.monotonic()
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        offsets = {
            TopicPartition(t, p): o for (t, p), o in self.positions.items() if (t, p) in assigned
        }
        if not offsets:
            return
        try:
            async with asyncio.timeout(5):
                await consumer.commit(offsets)
        except (KafkaError, TimeoutError) as exc:
            logger.debug("kafka offset commit skipped: %s", exc)

    async def _connect(self) -> AsyncConnection[Any]:
        # Projection SQL uses unqualified names: they resolve in this version's schema.
        return await database.connect(self._database_url, schema=self.schema)

    async def _recover(self, exc: BaseException) -> None:
        """After a connection or transient error: back off, reconnect if needed."""
        kind = "transient" if isinstance(exc, _TRANSIENT_ERRORS) else "database"
        PROJECTION_RETRIES.labels(*self._labels, kind).inc()
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            if kind == "transient" and self._conn is not None and not self._conn.closed:
                await self._backoff(attempt)
                return
            logger.error(
                "projection %s v%s: database unavailable (%s); retrying", *self._labels, exc
            )
            await self._backoff(attempt, cap=_OUTAGE_CAP_S)
            try:
                if self._conn is not None:
                    await self._conn.close()
                self._conn = await self._connect()
                return
            except DatabaseUnavailable as again:
                exc = again
        raise DatabaseUnavailable(self._database_url, f"still unreachable at shutdown: {exc}")

    async def _backoff(self, attempt: int, cap: float = _RETRY_CAP_S) -> None:
        """Wait out the backoff after failed attempt `attempt`; return early on `stop()`."""
        base = self.settings.retry_backoff_ms / 1000
        # Equal jitter: half to all of the ceiling. A base above the cap waits the cap; a
        # base of 0 (MEMSTREAM_RETRY_BACKOFF_MS=0) does not wait.
        delay = Backoff(min(base, cap), cap, jitter="equal").delay(attempt) if base > 0 else 0.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    def _caught_up(self) -> bool:
        """Every assigned partition committed up to the high watermark of its last fetch."""
        consumer = self._consumer
        if consumer is None:
            return False
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        return bool(assigned) and all(self.lag.get(tp, 1) == 0 for tp in assigned)

    async def _maybe_call_caught_up(self) -> None:
        """`Projection.caught_up` in its own transaction, once per stretch of batches that
        ends caught up (and once after start). Its work only accelerates reads, so a
        failure is logged and tried again after the next batch; a database outage is left
        to the next batch to notice and recover from."""
        if not (self._caught_up_due and self._caught_up()):
            return
        self._caught_up_due = False
        conn = self._conn
        if conn is None or conn.closed:
            return
        try:
            async with conn.transaction():
                await self.projection.caught_up(conn)
        except Exception:
            logger.exception("projection %s v%s: caught_up failed", *self._labels)

    def _update_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for tp in consumer.assignment():
            key = (tp.topic, tp.partition)
            highwater = consumer.highwater(tp)
            position = self.positions.get(key)
            if highwater is None or position is None:
                continue
            self.lag[key] = max(0, highwater - position)
            PROJECTION_LAG.labels(*self._labels, tp.topic, str(tp.partition)).set(self.lag[key])

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Seek every newly assigned partition to our checkpoint (creating it if new)."""
        consumer = self._consumer
        assert consumer is not None
        if not assigned:
            return
        conn = await self._connect()
        try:
            done = await self._start_checkpoints(conn, consumer, assigned)
        finally:
            await conn.close()
        for tp in assigned:
            offset = done[(tp.topic, tp.partition)]
            consumer.seek(tp, offset)
            self.positions[(tp.topic, tp.partition)] = offset
        logger.info(
            "projection %s v%s assigned %s",
            *self._labels,
            ", ".join(
                f"{tp.topic}[{tp.partition}]@{self.positions[(tp.topic, tp.partition)]}"
                for tp in sorted(assigned)
            ),
        )

    async def _start_checkpoints(
        self, conn: AsyncConnection[Any], consumer: AIOKafkaConsumer, partitions: Iterable[Any]
    ) -> dict[tuple[str, int], int]:
        """The version's checkpoints, after creating those of `partitions` it has none for
        at its start: the earliest offset, or the first at or after `start_at`."""
        done = await checkpoints.read(conn, self.projection.name, self.version)
        new = [tp for tp in partitions if (tp.topic, tp.partition) not in done]
        if not new:
            return done
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(new)
        if self.start_at is not None:
            ends = await consumer.end_offsets(new)
            found = await consumer.offsets_for_times(
                {tp: int(self.start_at.timestamp() * 1000) for tp in new}
            )
            starts = {tp: found[tp].offset if found[tp] else ends[tp] for tp in new}
        # Record where a new version starts, so its lag is measurable from now on.
        await conn.execute(
            "INSERT INTO memstream.checkpoints (projection, version, topic, partition,"
            " next_offset) SELECT %s, %s, t, p, o"
            " FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, o)"
            " ON CONFLICT DO NOTHING",
            [
                self.projection.name,
                self.version,
                [tp.topic for tp in new],
                [tp.partition for tp in new],
                [starts[tp] for tp in new],
            ],
        )
        return await checkpoints.read(conn, self.projection.name, self.version)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Let the batch in flight commit before another member takes its partitions.
        async with self._processing:
            pass
        for tp in revoked:
            key = (tp.topic, tp.partition)
            self.positions.pop(key, None)
            if self.lag.pop(key, None) is not None:
                PROJECTION_LAG.remove(*self._labels, tp.topic, str(tp.partition))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ProjectionRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self._runner._on_assigned(assigned)
        except (DatabaseUnavailable, KafkaConnectionError) as exc:
            # Without our checkpoints we must not fetch: stop rather than guess a position.
            logger.error("cannot seek to checkpoints: %s; stopping", exc)
            self._runner.stop()
            raise
