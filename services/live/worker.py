"""The live processor: per-call state of calls in progress, in a faust-streaming app.

It consumes the live topic (``turn.said``, ``call.signalled``: what platforms stream
mid-call, services/ingest) and the conversations topic (``conversation.started``,
``conversation.ended``, ``user.forgotten``), keeps each call's state in a faust Table
backed by a changelog topic (:mod:`services.live.state`), and:

- on a final caller turn that opens a new topic, **prefetches** the caller's best
  memories and passages for it through the query API's search (the same embedder and
  ``search_memories``), writes them to ``live.prefetches`` (projections/live.py) for the
  agent tools and the call's context stream, and appends a ``context.prefetched``;
- when a call has live turns but no end-of-call report ``MEMSTREAM_LIVE_RECONSTRUCT_AFTER_S``
  after its last live event, appends a ``conversation.ended`` built from the live turns,
  with status ``reconstructed`` (once: its id is derived from the call). A real report
  that comes later is another ``conversation.ended`` of the same call: the conversations
  read model keeps the latest, and the memories it repeats reinforce nothing (one call's
  reports count once, projections/memories/projection.py);
- drops a call's state and prefetches ``MEMSTREAM_LIVE_GRACE_S`` after its end, and a
  subject's at once when the subject is forgotten.

Topics and partitions. Every memstream topic is keyed by the subject's pseudonym with the
same partition count, so a subject's live events, reports and erasure arrive on one
partition number; the table is keyed the same way and has as many partitions (faust
checks the co-partitioning), so the worker that owns a partition owns those callers'
state. Its changelog records are placed by the producer's partitioner (murmur2 of the
key, as ``EventLog`` places events), so a subject's state is on its events' partition
number whoever writes it: the agent, or the timer that reconstructs and drops calls.
Several workers (several ``memstream run``, or ``memstream live``) share the partitions
as one faust app, one consumer group: the app id is ``<MEMSTREAM_TOPIC_PREFIX>.live``.

Concurrency. The agent takes the events that arrived together (up to
:data:`BATCH` within :data:`BATCH_WITHIN_S`), and handles each subject's in order while
different subjects' run side by side: one call's embedding or search does not hold the
others' turns up. A lock per subject keeps the timer from working on a subject's state
while an event of it is handled. The batch's offsets are acknowledged when it is done.

Delivery is at least once: after a crash, events since the last commit come again, and
faust can also commit an offset past an event still being processed (faust-streaming
issue 606), so that one event may not come again. Both are harmless here: a turn is
folded once (its event id is kept in the call's state), a prefetch's id is derived from
its turn's (recorded and appended idempotently), a reconstruction's from its call; and a
turn lost that way costs at most its own prefetch — the state is in the changelog, so
later turns are folded and prefetched as before.

A new deployment starts at the live topic's end (``auto_offset_reset=latest``): calls in
progress before the processor's very first start are not followed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from projections.conversations.queries import platform_status
from projections.live import content_terms, delete_call, delete_subject, record_prefetch
from schemas import (
    CallSignalled,
    ContextPrefetched,
    ConversationEnded,
    ConversationStarted,
    EventDecodeError,
    PrefetchedHit,
    Source,
    SubjectErased,
    TurnSaid,
    UserForgotten,
    decode_event,
    derived_event_id,
    utc_now,
)
from services.live.metrics import (
    LIVE_CALLS,
    LIVE_EVENTS,
    PREFETCH_SECONDS,
    PREFETCHES,
    RECONSTRUCTED,
    TURN_SECONDS,
)
from services.live.state import MIN_TERMS, LiveCall, LiveCalls
from services.query.app import QueryService
from services.query.search import Hit, SearchQuery, search_memories
from services.settings import Settings
from streams.exceptions import BrokerUnavailable, ConfigurationError
from streams.offsets import client_options, partitions_of
from streams.subject_keys import install_personal_codec
from streams.topics import Topics

__all__ = ["PREFETCH_RESULTS", "RECONSTRUCTED_STATUS", "LiveProcessor", "app_id"]

logger = logging.getLogger(__name__)

#: Hits prefetched per topic.
PREFETCH_RESULTS = 8
#: The status of a conversation.ended the processor reconstructed from live turns.
RECONSTRUCTED_STATUS = "reconstructed"
#: How long the app may take to start (its table recovered from the changelog included).
START_TIMEOUT_S = 300.0
#: Events the agent takes together, and how long it waits for more (see the docstring).
BATCH = 256
BATCH_WITHIN_S = 0.005


def app_id(settings: Settings) -> str:
    """The faust app id: its consumer group, and the prefix of its internal topics."""
    return f"{settings.topic_prefix}.live"


def _credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    options = settings.kafka_options()
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    if protocol == "SASL_PLAINTEXT" or protocol == "SASL_SSL":
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=options.get("ssl_context"),
            mechanism=options["sasl_mechanism"],
        )
    raise ConfigurationError(f"the live processor cannot connect with {protocol}")


def _prefetched_hit(hit: Hit) -> PrefetchedHit:
    provenance = hit.provenance[0] if hit.provenance else {}
    conversation_id = hit.conversation_id or provenance.get("conversation_id")
    if hit.memory_id is not None:
        hit_id, turns = str(hit.memory_id), tuple(provenance.get("turns") or ())
    else:
        hit_id, turns = f"{hit.conversation_id}#{hit.turn}", (hit.turn or 0,)
    return PrefetchedHit(
        kind="memory" if hit.memory_id is not None else "passage",
        id=hit_id,
        text=hit.content,
        score=hit.score,
        said_at=hit.observed_at,
        conversation_id=conversation_id,
        turns=turns,
        speaker=hit.speaker if hit.speaker in ("caller", "agent") else None,
    )


async def start_at_the_end(settings: Settings, topics: list[str]) -> None:
    """Commit, for the live processor's group, the log end of each partition of `topics`
    it has no offset for (a first start: see the module docstring). Refused while other
    workers of the group run, which means the group has committed already: nothing to do."""
    partitions = await partitions_of(settings, topics)
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=app_id(settings), enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        missing = [tp for tp in partitions if await consumer.committed(tp) is None]
        if missing:
            ends = await consumer.end_offsets(missing)
            await consumer.commit({tp: ends[tp] for tp in missing})
            logger.info("live processor: starts at the end of %d partitions", len(missing))
    except KafkaError as exc:
        logger.info("live processor: starting offsets left to the group: %s", exc)
    finally:
        await consumer.stop()


class _SubjectTable(faust.Table[bytes, bytes]):
    """A table whose changelog partition is its key's, as ``EventLog`` places events
    (murmur2 of the key over the partition count): a subject's state is on its events'
    partition number whoever writes it, the agent or the timer. (faust's own
    ``use_partitioner`` asks the producer, whose metadata may not know the changelog
    topic yet on its first write.)"""

    _partitioner = DefaultPartitioner()

    def partition_for_key(self, key: Any) -> int:
        partitions = list(range(self.partitions or 1))  # always given (settings.partitions)
        partition: int = self._partitioner(key, partitions, partitions)
        return partition


class LiveProcessor:
    """The faust app of the live processor, started and stopped inside the caller's
    event loop (``memstream run``, tests): no web server, no signal handlers of its own.

    ``clock`` (seconds since the epoch) times reconstructions and expiry; ``tick_s`` is
    how often the timer looks for them (by default a quarter of the reconstruction
    delay, between 0.2 and 30 s). As a worker of ``memstream run`` (services/cli/serve.py):
    ``start``, then ``run`` until ``stop``; elsewhere ``start`` and ``close``."""

    name = "live"
    #: Run alone (`memstream live`), the process keeps CPython's garbage collector
    #: settings: the projections' (a young generation of 100,000 objects) made its
    #: collections long enough to show in the turn-to-prefetch p95 (bench_live: 124 and
    #: 234 ms in two runs against 58 and 128 ms with the defaults).
    keeps_default_gc = True

    def __init__(
        self,
        settings: Settings,
        *,
        service: QueryService | None = None,
        clock: Callable[[], float] = time.time,
        tick_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.clock = clock
        self.tick_s = tick_s or min(30.0, max(0.2, settings.live_reconstruct_after_s / 4))
        self._own_service = service is None
        # One thread for the local model: onnxruntime's default (a spinning thread per
        # core) made the processor spend 69% of a core where one thread spends 42%
        # (bench_live, 200 calls), with the broker and the database on the same cores.
        self.service = service or QueryService(settings, embed_threads=1)
        self._app: faust.App | None = None
        self._table: Any = None
        self._locks: dict[bytes, asyncio.Lock] = {}
        # When each subject's next call is due (reconstruction or expiry), kept as its
        # state is written: the timer opens only the states that are due. None until the
        # first timer run has read the whole table (after a start, the recovered states).
        self._due: dict[bytes, float] | None = None
        self._stopped = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the app: its table recovered from the changelog, its agent consuming."""
        # The calls' state is sealed by the personal data codec as it is written to the
        # changelog: installed here as every projection runner does, not only by the
        # process that serves this one, so no way of starting it writes it in clear.
        await asyncio.to_thread(install_personal_codec, self.settings, check=True)
        await start_at_the_end(self.settings, [self.topics.name("live"), self.topics.conversations])
        if self._own_service:
            await self.service.start()
        for name in ("faust", "mode"):  # some 80 lines at INFO per start and stop
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.root.level))
        app = self._build()
        try:
            # A start that cannot create faust's own topics would hang rather than fail.
            await asyncio.wait_for(app.start(), START_TIMEOUT_S)
        except TimeoutError:
            await app.stop()
            raise BrokerUnavailable(
                self.settings.require_kafka(), "the live processor did not start"
            ) from None
        self._app = app

    async def run(self) -> None:
        await self._stopped.wait()
        await self.close()

    def stop(self) -> None:
        self._stopped.set()

    async def close(self) -> None:
        """Stop the app (its table's last changes flushed to the changelog)."""
        if self._app is not None:
            app, self._app = self._app, None
            await app.stop()
        if self._own_service:
            await self.service.stop()

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Until the worker has its partitions (tests: before they send a call)."""
        deadline = time.monotonic() + timeout
        while True:
            app = self._app
            if app is not None and app.consumer.assignment() and not app.rebalancing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the live processor got no partitions")
            await asyncio.sleep(0.05)

    def _build(self) -> faust.App:
        settings = self.settings
        bootstrap = settings.require_kafka()
        # faust keeps its app directory there (tables are in memory: nothing else).
        datadir = Path(settings.home) / "live" / app_id(settings)
        datadir.parent.mkdir(parents=True, exist_ok=True)
        app = faust.App(
            app_id(settings),
            broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
            broker_credentials=_credentials(settings),
            store="memory://",
            datadir=str(datadir),
            web_enabled=False,
            autodiscover=False,
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            table_standby_replicas=0,
            # Offsets start committed (start_at_the_end): this is for those that fall
            # out of the live topic's retention while no worker runs.
            consumer_auto_offset_reset="earliest",
            # A worker that died (kill -9) gives its partitions up after 10 s, as the
            # projections' consumers do (faust's default is 60 s of a call unfollowed).
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            broker_commit_interval=1.0,
            processing_guarantee="at_least_once",
            env={},  # faust's own environment variables (TOPIC_PARTITIONS...) do not apply
        )
        source = app.topic(
            self.topics.name("live"),
            self.topics.conversations,
            key_serializer="raw",
            value_serializer="raw",
        )
        self._table = app.tables.add(
            _SubjectTable(
                app,
                name="calls",
                default=None,
                beacon=app.tables.beacon,
                partitions=settings.partitions,
                key_type=bytes,
                value_type=bytes,
                # Compacted (faust's default) in hourly segments: a dropped call's state
                # and tombstone leave the changelog within hours, not weeks.
                extra_topic_configs={"segment.ms": "3600000", "delete.retention.ms": "3600000"},
            )
        )

        async def restored() -> None:
            # Every state the changelog restored is read at the next run, not only those
            # already known to be due (partitions this worker was just given).
            self._due = None

        self._table.on_recover(restored)

        @app.agent(source)
        async def live_events(stream: Any) -> None:
            async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
                by_subject: dict[bytes, list[tuple[bytes, bytes]]] = {}
                for event in events:
                    if event.key is not None and event.value is not None:
                        by_subject.setdefault(event.key, []).append((event.key, event.value))
                await asyncio.gather(*(self._subject_events(e) for e in by_subject.values()))

        async def look_for_due_calls() -> None:
            await self._look_for_due_calls()

        app.timer(interval=self.tick_s)(look_for_due_calls)

        return app

    async def _subject_events(self, events: list[tuple[bytes, bytes]]) -> None:
        """One subject's events of a batch, in order, under the subject's lock."""
        async with self._lock(events[0][0]):
            for key, value in events:
                await self._guarded(self._handle(key, value))

    def _lock(self, key: bytes) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _guarded(self, work: Any) -> None:
        """An event's work; a failure (the database away while prefetching...) is logged
        and the event skipped: an agent that raised would stop following every call."""
        try:
            await work
        except Exception:
            LIVE_EVENTS.labels("skipped_failed").inc()
            logger.exception("live processor: an event could not be processed")

    # -- the table -----------------------------------------------------------------------

    def _calls(self, key: bytes) -> LiveCalls:
        return LiveCalls.loads(self._table.get(key))

    def _keep(self, key: bytes, calls: LiveCalls) -> None:
        if calls.calls:
            self._table[key] = calls.dumps()
            if self._due is not None:
                self._remember_due(key, calls)
        else:
            if self._due is not None:
                self._due.pop(key, None)
            if self._table.get(key) is not None:
                del self._table[key]
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]

    # -- events --------------------------------------------------------------------------

    async def _handle(self, key: bytes, value: bytes) -> None:
        began = time.perf_counter()
        try:
            event = decode_event(value)
        except SubjectErased:
            LIVE_EVENTS.labels("skipped_erased").inc()
            return
        except EventDecodeError as exc:
            LIVE_EVENTS.labels("skipped_undecodable").inc()
            logger.warning("live processor: an undecodable event skipped: %s", exc)
            return
        if isinstance(event, TurnSaid):
            await self._turn(key, event)
        elif isinstance(event, CallSignalled):
            self._signal(key, event)
        elif isinstance(event, ConversationEnded):
            self._ended(key, event)
        elif isinstance(event, ConversationStarted):
            self._started(key, event)
        elif isinstance(event, UserForgotten):
            await self._forgotten(key, event)
        else:
            return  # the processor's own context.prefetched, and what it does not follow
        LIVE_EVENTS.labels(event.type).inc()
        TURN_SECONDS.observe(time.perf_counter() - began)

    def _call(self, calls: LiveCalls, event: TurnSaid | CallSignalled) -> LiveCall:
        data = event.data
        call = calls.calls.get(data.conversation_id)
        if call is None:
            call = LiveCall(
                conversation_id=data.conversation_id,
                tenant=event.tenant,
                subject=event.subject,
                platform=event.source.platform,
                agent_id=event.source.agent_id,
                started_at=data.started_at or event.occurred_at,
                last_event_at=event.occurred_at,
                seen_at=self.clock(),
            )
            calls.calls[data.conversation_id] = call
        call.seen_at = self.clock()
        call.last_event_at = max(call.last_event_at, event.occurred_at)
        if data.started_at is not None and data.started_at < call.started_at:
            call.started_at = data.started_at
        return call

    async def _turn(self, key: bytes, event: TurnSaid) -> None:
        calls = self._calls(key)
        call = self._call(calls, event)
        if call.ended in ("reported", "reconstructed"):
            LIVE_EVENTS.labels("skipped_after_end").inc()
            self._keep(key, calls)
            return
        said = [
            (turn, call.add_turn(f"{event.id}/{i}", turn))
            for i, turn in enumerate(event.data.turns)
        ]
        topic = next(
            (
                turn.text
                for turn, new in reversed(said)
                if new and turn.role == "user" and len(content_terms(turn.text)) >= MIN_TERMS
            ),
            None,
        )
        if topic is not None:
            vector, model = await self.service.embed(topic)
            if not call.joins_topic(vector):
                ids = await self._prefetch(event, call, topic, vector, model)
                call.offer(ids)
        self._keep(key, calls)

    async def _prefetch(
        self, event: TurnSaid, call: LiveCall, topic: str, vector: list[float], model: str
    ) -> list[str]:
        """Prefetch the new topic: search, keep for the readers, append; the hits' ids."""
        query = SearchQuery(call.tenant, call.subject, topic, limit=PREFETCH_RESULTS)
        # Checked every few seconds, not asked of the database at each prefetch.
        passage_stats = await self.service.read_model_exists("conversations.passage_stats")
        async with self.service.pool.connection() as conn:
            hits = await search_memories(
                conn, query, vector=vector, model=model, now=utc_now(), passage_stats=passage_stats
            )
            prefetched = ContextPrefetched.create(
                id=derived_event_id("context.prefetched", str(event.id)),
                tenant=call.tenant,
                subject=call.subject,
                source=Source(platform="memstream", event_id=str(event.id), agent_id=call.agent_id),
                occurred_at=event.occurred_at,
                correlation_id=call.conversation_id,
                causation_id=event.id,
                data={
                    "conversation_id": call.conversation_id,
                    "started_at": call.started_at,
                    "topic": topic,
                    "hits": [_prefetched_hit(hit) for hit in hits],
                },
            )
            await record_prefetch(conn, prefetched, call.topics)
        PREFETCH_SECONDS.observe(max(0.0, time.time() - event.recorded_at.timestamp()))
        PREFETCHES.inc()
        await self.service.log.append(prefetched)
        return [hit.id for hit in prefetched.data.hits]

    def _signal(self, key: bytes, event: CallSignalled) -> None:
        calls = self._calls(key)
        call = self._call(calls, event)
        data = event.data
        if call.ended is None and (
            data.signal == "hang" or (data.signal == "status" and data.status == "ended")
        ):
            call.ended = "hung-up"
        self._keep(key, calls)

    def _started(self, key: bytes, event: ConversationStarted) -> None:
        calls = self._calls(key)
        call = calls.calls.get(event.data.conversation_id)
        if call is not None and event.occurred_at < call.started_at:
            call.started_at = event.occurred_at
            self._keep(key, calls)

    def _ended(self, key: bytes, event: ConversationEnded) -> None:
        calls = self._calls(key)
        call = calls.calls.get(event.data.conversation_id)
        if call is None or call.ended == "reported":
            return
        ours = event.data.status == RECONSTRUCTED_STATUS and event.source.platform == "memstream"
        if ours and call.ended == "reconstructed":
            return  # the tick that reconstructed it marked it already
        call.ended, call.ended_at = ("reconstructed" if ours else "reported"), self.clock()
        self._keep(key, calls)

    async def _forgotten(self, key: bytes, event: UserForgotten) -> None:
        calls = self._calls(key)
        if calls.calls:
            self._keep(key, LiveCalls())
        async with self.service.pool.connection() as conn:
            await delete_subject(conn, event.tenant, event.subject)

    # -- reconstruction and expiry -------------------------------------------------------

    def _remember_due(self, key: bytes, calls: LiveCalls) -> None:
        assert self._due is not None
        after, grace = self.settings.live_reconstruct_after_s, self.settings.live_grace_s
        due = [d for c in calls.calls.values() if (d := c.next_due(after, grace)) is not None]
        if due:
            self._due[key] = min(due)
        else:
            self._due.pop(key, None)

    async def _look_for_due_calls(self) -> None:
        """Reconstruct or drop the calls that are due, each subject under its lock. The
        first run after the table was restored from its changelog (at the start, and after
        each rebalance) reads every state; the others open only the subjects whose next
        call is due. Nothing runs while the table is being restored."""
        now = self.clock()
        app, live = self._app, self.topics.name("live")
        if app is None or app.rebalancing or app.in_recovery:
            # The table is being restored from its changelog: what it holds is not all
            # yet. Once it is, `restored` has the next run read every state.
            return
        # The table's memory keeps the subjects of partitions handed to another worker at
        # a rebalance: only those of this worker's partitions are its to end or drop.
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == live}
        if self._due is None:
            self._due = {}
            for key, value in list(self._table.items()):
                if value is None:
                    continue
                try:
                    self._remember_due(key, LiveCalls.loads(value))
                except Exception:  # an erased subject's state: its key is gone
                    self._due[key] = now
        for key, due in list(self._due.items()):
            if due > now or self._table.partition_for_key(key) not in owned:
                continue
            async with self._lock(key):
                await self._guarded(self._tick(key))
        LIVE_CALLS.set(len(self._due))

    async def _tick(self, key: bytes) -> None:
        try:
            calls = self._calls(key)  # again, under the lock: an event may have changed it
        except Exception:  # an erased subject's state: its key is gone
            logger.info("live processor: dropping calls whose state no longer opens")
            self._keep(key, LiveCalls())
            return
        now = self.clock()
        after, grace = self.settings.live_reconstruct_after_s, self.settings.live_grace_s
        for conversation_id, call in list(calls.calls.items()):
            if call.due_for_reconstruction(now, after):
                if await self._reported(call):
                    call.ended, call.ended_at = "reported", now
                    continue
                await self._reconstruct(call)
                call.ended, call.ended_at = "reconstructed", now
            elif call.expired(now, grace):
                del calls.calls[conversation_id]
                async with self.service.pool.connection() as conn:
                    await delete_call(conn, call.tenant, conversation_id)
        self._keep(key, calls)

    async def _reported(self, call: LiveCall) -> bool:
        """Whether the conversations read model has the call's own report."""
        async with self.service.pool.connection() as conn:
            status = await platform_status(conn, call.tenant, call.conversation_id, call.subject)
        return status is not None and status != RECONSTRUCTED_STATUS

    async def _reconstruct(self, call: LiveCall) -> None:
        ended_at = call.ended_at_platform
        ended = ConversationEnded.create(
            id=derived_event_id("conversation.reconstructed", call.tenant, call.conversation_id),
            tenant=call.tenant,
            subject=call.subject,
            source=Source(
                platform="memstream", event_id=call.conversation_id, agent_id=call.agent_id
            ),
            occurred_at=ended_at,
            correlation_id=call.conversation_id,
            data={
                "conversation_id": call.conversation_id,
                "started_at": call.started_at,
                "ended_at": ended_at,
                "duration_secs": max(0.0, (ended_at - call.started_at).total_seconds()),
                "status": RECONSTRUCTED_STATUS,
                "turns": call.turns,
                "metadata": {
                    "reconstructed": True,
                    "platform": call.platform,
                    "reason": "no end-of-call report within"
                    f" {self.settings.live_reconstruct_after_s:g} s of the last live event",
                },
            },
        )
        await self.service.log.append(ended)
        RECONSTRUCTED.inc()
        logger.info(
            "reconstructed a call without its report",
            extra={"tenant": call.tenant, "conversation_id": call.conversation_id},
        )
