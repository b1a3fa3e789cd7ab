"""Reading the log outside any consumer group: raw records of physical topics, in time order.

:class:`LogReader` assigns itself every partition of the given physical topics, seeks to a
start (earliest, latest, a point in time, or explicit offsets) and yields the raw records
(aiokafka ``ConsumerRecord``) either up to the end as of opening (``follow=False``: a dump)
or forever (``follow=True``: a tail). It commits nothing and joins no group, so it can run
beside the projections without disturbing them.

Records of different partitions are merged by timestamp: a record is yielded only when
every partition that still has records to deliver has one buffered, and the earliest of
those heads goes first. For a dump this gives exact timestamp order (ties broken by topic,
partition, offset); a tail only waits for partitions known to be behind their high
watermark, so a record that arrives late on an idle partition can come after a later one.
Within a partition the log's order is always kept. A dump that fetches nothing for
``stall_s`` while records are due raises :class:`BrokerUnavailable`; a tail waits for the
broker to come back. Decoding and filtering belong to the callers
(``services/cli/eventlog.py``, ``services/imports.py``).

``keys`` reads only the partitions that records with those keys are on
(:func:`partition_of`: Kafka's default partitioner, which ``EventLog`` appends with): one
subject's records (key: its pseudonym) without reading the rest of the log
(``services/personal_data.py``). The other records of those partitions are still
yielded; filtering them by key is the caller's.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from streams.exceptions import BrokerUnavailable
from streams.offsets import partitions_of, standalone_consumer
from streams.settings import StreamsSettings

logger = logging.getLogger(__name__)

#: Where a reader starts: the first record, the end (only new records), the first record at
#: or after a time, or explicit next offsets per ``(physical topic, partition)`` (partitions
#: not in the mapping start at the earliest record).
Start = Literal["earliest", "latest"] | datetime | Mapping[tuple[str, int], int]

_POLL_MS = 500
# A dump that fetches nothing for this long while records are due means the broker is gone.
_STALL_S = 60.0
_PARTITIONER = DefaultPartitioner()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a topic of `partitions` partitions that a record keyed `key` is
    appended to (murmur2, as Kafka's and aiokafka's default partitioners choose)."""
    every = list(range(partitions))
    partition: int = _PARTITIONER(key, every, every)
    return partition


class LogReader:
    """An async iterator over the raw records of physical topics (see the module docstring).

    Use as ``async with LogReader(bootstrap, topics, start=...) as reader: async for record
    in reader: ...``. Raises :class:`BrokerUnavailable` when the broker cannot be reached.
    """

    def __init__(
        self,
        bootstrap: str | StreamsSettings,
        topics: Sequence[str],
        *,
        start: Start = "earliest",
        follow: bool = False,
        poll_ms: int = _POLL_MS,
        stall_s: float = _STALL_S,
        keys: Collection[bytes] | None = None,
    ) -> None:
        # A StreamsSettings brings the broker's security settings (streams.offsets.client_options).
        self._client = bootstrap
        self._bootstrap = (
            bootstrap.require_kafka() if isinstance(bootstrap, StreamsSettings) else bootstrap
        )
        self._topics = list(topics)
        self._start = start
        self._follow = follow
        self._poll_ms = poll_ms
        self._stall_s = stall_s
        self._keys = None if keys is None else list(keys)
        self._stack = AsyncExitStack()
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._buffers: dict[TopicPartition, deque[Any]] = {}
        # Next offset the consumer will fetch per partition (aiokafka's position, kept here
        # so the merge does not await the consumer once per record).
        self._fetched: dict[TopicPartition, int] = {}
        #: First offset read per (topic, partition), set on opening.
        self.starts: dict[tuple[str, int], int] = {}
        #: End offsets as of opening (a dump stops there; a tail goes on past them).
        self.ends: dict[tuple[str, int], int] = {}

    @property
    def total(self) -> int:
        """Records between the starts and the ends as of opening (a dump's progress total)."""
        return sum(max(0, self.ends[key] - first) for key, first in self.starts.items())

    async def __aenter__(self) -> LogReader:
        try:
            partitions = await partitions_of(self._client, self._topics)
            if self._keys is not None:
                partitions = self._of_keys(partitions, self._keys)
            self._consumer = await self._stack.enter_async_context(
                standalone_consumer(self._client)
            )
            if partitions:
                await self._seek(self._consumer, partitions)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._stack.aclose()
            raise BrokerUnavailable(self._bootstrap, f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._consumer = None
        await self._stack.aclose()

    @staticmethod
    def _of_keys(partitions: list[TopicPartition], keys: list[bytes]) -> list[TopicPartition]:
        """The partitions among `partitions` that records keyed with `keys` are on."""
        counts: dict[str, int] = {}
        for tp in partitions:
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
        wanted = {(topic, partition_of(key, n)) for topic, n in counts.items() for key in keys}
        return [tp for tp in partitions if (tp.topic, tp.partition) in wanted]

    async def _seek(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        firsts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        starts: dict[TopicPartition, int]
        if self._start == "earliest":
            starts = dict(firsts)
        elif self._start == "latest":
            starts = dict(ends)
        elif isinstance(self._start, datetime):
            if self._start.tzinfo is None:
                raise ValueError("a start time must be timezone-aware")
            found = await consumer.offsets_for_times(
                {tp: int(self._start.timestamp() * 1000) for tp in partitions}
            )
            # None: no record at or after that time yet, so the partition starts at its end.
            starts = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in partitions}
        else:
            given = self._start
            starts = {tp: given.get((tp.topic, tp.partition), firsts[tp]) for tp in partitions}
        for tp in partitions:
            # Clamp into the partition's extent: seeking outside it would make the consumer
            # reset to its default position silently.
            offset = min(max(starts[tp], firsts[tp]), ends[tp])
            consumer.seek(tp, offset)
            self._fetched[tp] = offset
            self._buffers[tp] = deque()
            self.starts[(tp.topic, tp.partition)] = offset
            self.ends[(tp.topic, tp.partition)] = ends[tp]
        self._partitions = partitions

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._records()

    async def _records(self) -> AsyncIterator[Any]:
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("open the reader with `async with` before iterating")
        if not self._partitions:
            return  # none of the topics exists: nothing to read, now or (for a tail) later
        stalled_since = time.monotonic()
        while True:
            # 1. Fill: fetch for every partition that still has records to deliver but none
            #    buffered, so the merge below can compare all heads.
            blocking = [tp for tp in self._partitions if self._blocks(consumer, tp)]
            if blocking:
                if await self._fetch(consumer, blocking):
                    stalled_since = time.monotonic()
                elif not self._follow and time.monotonic() - stalled_since > self._stall_s:
                    # aiokafka retries a lost broker silently: a dump must end; a tail waits.
                    raise BrokerUnavailable(
                        self._bootstrap, f"no records fetched in {self._stall_s:.0f} s"
                    )
                if not self._follow:
                    continue
                # A tail does not wait on a partition that fetched nothing in one poll.
            heads = [(buf[0].timestamp, tp.topic, tp.partition, buf[0].offset, tp)
                     for tp, buf in self._buffers.items() if buf]  # fmt: skip
            if not heads:
                if not self._follow:
                    return  # 2. A dump is done when no partition is behind its end.
                await self._fetch(consumer, self._partitions)  # a tail waits for new records
                stalled_since = time.monotonic()
                continue
            # 3. Deliver the earliest head (ties by topic, partition, offset).
            yield self._buffers[min(heads)[-1]].popleft()

    def _blocks(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
        if self._buffers[tp]:
            return False
        target = consumer.highwater(tp) if self._follow else self.ends[(tp.topic, tp.partition)]
        return target is not None and self._fetched[tp] < target

    async def _fetch(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
        """Buffer what one poll of `partitions` brings; return the number of records."""
        try:
            batch = await consumer.getmany(*partitions, timeout_ms=self._poll_ms)
            count = 0
            for tp, records in batch.items():
                if not self._follow:
                    end = self.ends[(tp.topic, tp.partition)]
                    records = [r for r in records if r.offset < end]
                self._buffers[tp].extend(records)
                count += len(records)
            for tp in {*partitions, *batch}:
                self._fetched[tp] = await consumer.position(tp)
        except KafkaError as exc:
            raise BrokerUnavailable(self._bootstrap, f"{type(exc).__name__}: {exc}") from exc
        return count
