"""Projection versions over time: what a new version is built with, and workers that run
whichever version is live.

- :func:`new_version_config`: a new version follows the live lineage of every processor
  whose output it reads (streams.lineage) and keeps the settings it is given.
- :func:`downstream`: the projections that read a processor's output, transitively (what
  ``memstream reprocess`` must build again beside the live ones).
- :class:`LiveProjection`: a worker of one projection that runs its live version and, when
  ``memstream projections swap`` (or ``rebuild --swap``) switches it, stops that runner and
  starts the new live version from its own checkpoints. ``memstream run`` runs these.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import TopicPartition
from psycopg import AsyncConnection

from projections import PROJECTIONS, build
from projections.settings import ProjectionSettings
from streams import database, lineage, versions
from streams.exceptions import DatabaseUnavailable
from streams.metrics import REBUILD_PROGRESS
from streams.offsets import standalone_consumer
from streams.runtime import ProjectionRunner

logger = logging.getLogger(__name__)


def producers_of(name: str) -> dict[str, str]:
    """Logical topic -> the processor that appends derived events to it, for the topics
    projection `name` reads."""
    return {
        topic: producer.name
        for topic in PROJECTIONS[name].topics
        for producer in PROJECTIONS.values()
        if topic in producer.produces
    }


def downstream(name: str) -> list[str]:
    """Projections reading what processor `name` derives, transitively, in an order where
    every projection comes after the processors it reads (`name` not included)."""
    found: list[str] = []
    frontier = [name]
    while frontier:
        current = frontier.pop(0)
        for other, cls in PROJECTIONS.items():
            if other in found or other == name:
                continue
            if any(t in cls.topics for t in PROJECTIONS[current].produces):
                found.append(other)
                frontier.append(other)
    return found


async def new_version_config(
    conn: AsyncConnection[Any],
    name: str,
    *,
    settings: Mapping[str, Any] | None = None,
    follows: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The config of a new version of `name`: it follows, per topic it reads, the version
    of the producing processor given in `follows` (processor -> version), else the live
    one (v1 when none is registered yet); `settings` overrides MEMSTREAM_* settings."""
    lineages: dict[str, str] = {}
    for topic, producer in producers_of(name).items():
        version = (follows or {}).get(producer)
        if version is None:
            version = await versions.live_version(conn, producer) or 1
        lineages[topic] = lineage.tag(producer, version)
    config: dict[str, Any] = {"follows": lineages}
    if settings:
        config["settings"] = dict(settings)
    return config


async def live_or_first(conn: AsyncConnection[Any], name: str) -> tuple[int, dict[str, Any]]:
    """The live version of `name` and its config; version 1 (with a new config) if the
    projection has never run."""
    version = await versions.live_version(conn, name)
    if version is None:
        return 1, await new_version_config(conn, name)
    config = await versions.config(conn, name, version)
    if "follows" not in config:
        # Registered before lineage was recorded: only v1 of each processor existed then.
        config["follows"] = {
            topic: lineage.tag(producer, 1) for topic, producer in producers_of(name).items()
        }
    return version, config


class LiveProjection:
    """Runs the live version of one projection; follows switches of the live version."""

    def __init__(self, name: str, settings: ProjectionSettings, *, poll_s: float = 2.0) -> None:
        self.name = name
        self.settings = settings
        self.poll_s = poll_s
        self.runner: ProjectionRunner | None = None
        self._stopping = asyncio.Event()
        self._conn: AsyncConnection[Any] | None = None  # for the poll of the live version

    async def _next_runner(self) -> ProjectionRunner:
        async with await _connect(self.settings) as conn:
            version, config = await live_or_first(conn, self.name)
        return ProjectionRunner(
            build(self.name, self.settings, config), self.settings, version=version, config=config
        )

    async def start(self) -> None:
        """Start the live version's runner (raises *Unavailable errors, like a runner)."""
        self.runner = await self._next_runner()
        await self.runner.start()

    def stop(self) -> None:
        self._stopping.set()
        if self.runner is not None:
            self.runner.stop()

    async def run(self) -> None:
        """Run until `stop()`, restarting on a switch of the live version."""
        if self.runner is None:
            await self.start()
        while True:
            runner = self.runner
            assert runner is not None
            task = asyncio.create_task(runner.run(), name=f"live-{self.name}")
            switched = False
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.poll_s)
                if done or self._stopping.is_set():
                    break
                if await self._live_changed(runner.version):
                    switched = True
                    logger.info(
                        "projection %s: the live version is no longer v%d; switching",
                        self.name,
                        runner.version,
                        extra={"projection": self.name, "version": runner.version},
                    )
                    runner.stop()
                    break
            try:
                await task  # re-raises what stopped the runner
            except BaseException:
                await self._close()
                raise
            if self._stopping.is_set() or not switched:
                await self._close()
                return
            self.runner = await self._next_runner()
            await self.runner.start()

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _live_changed(self, version: int) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await _connect(self.settings)
            live = await versions.live_version(self._conn, self.name)
        except (DatabaseUnavailable, psycopg.Error):
            if self._conn is not None:
                await self._conn.close()
            self._conn = None
            return False  # the runner itself deals with an outage
        return live is not None and live != version


@dataclass
class Build:
    """A projection version being built (or caught up), and how far it has come."""

    name: str
    version: int
    config: dict[str, Any]
    start_at: datetime | None = None
    #: Events projected by this build so far, and events still to project.
    done: int = 0
    remaining: int = 0


async def run_to_log_end(
    settings: ProjectionSettings,
    builds: Sequence[Build],
    *,
    timeout_s: float | None = None,
    on_progress: Callable[[Sequence[Build]], None] = lambda _: None,
    poll_s: float = 0.5,
) -> bool:
    """Run the versions in `builds` (processors before what reads them) until every one
    has projected the whole log, then finish them (``Projection.caught_up``: indexes) and
    stop. True when caught up, False when `timeout_s` ran out first (they stop where they
    are; running them again resumes from their checkpoints). A runner that fails raises.
    """
    runners = [
        ProjectionRunner(
            build(b.name, settings, b.config),
            settings,
            version=b.version,
            start_at=b.start_at,
            config=b.config,
        )
        for b in builds
    ]
    tasks: list[asyncio.Task[None]] = []
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # Where each build starts, per partition: its checkpoint if it has run before, else
    # the first offset it will read. Progress is measured from there.
    starts = await _starting_offsets(settings, builds)
    try:
        for runner in runners:
            await runner.start()
            tasks.append(asyncio.create_task(runner.run(), name=f"build-{runner.group_id}"))
        async with await _connect(settings) as conn:
            while True:
                for task in tasks:
                    if task.done():
                        task.result()  # a runner that stopped on its own failed
                        raise RuntimeError(f"{task.get_name()} stopped before catching up")
                # In plan order: when a processor shows no lag, its output is already in
                # the log, so the lag read next for its readers includes all of it.
                behind = False
                for b, runner in zip(builds, runners, strict=True):
                    cls = PROJECTIONS[b.name]
                    where = await versions.positions(settings, conn, cls, b.version)
                    b.done = sum(
                        max(0, (p.checkpoint or 0) - starts[b.name, p.topic, p.partition])
                        for p in where
                        if p.checkpoint is not None and (b.name, p.topic, p.partition) in starts
                    )
                    b.remaining = sum(p.lag for p in where)
                    total = b.done + b.remaining
                    REBUILD_PROGRESS.labels(b.name, str(b.version)).set(
                        b.done / total if total else 1.0
                    )
                    # Both views must agree: the log's extent (which a broker's transient
                    # metadata error could shorten) and the runner's own fetch positions.
                    behind = behind or b.remaining > 0 or not runner.is_caught_up
                on_progress(builds)
                if not behind:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(poll_s)
    finally:
        for runner in runners:
            runner.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
    # What a runner does once caught up (e.g. build the vector index) is done now, not by
    # the first process that serves the version after the switch.
    for runner in runners:
        async with await _connect(settings, runner.schema) as conn, conn.transaction():
            await runner.projection.caught_up(conn)
    return True


async def _starting_offsets(
    settings: ProjectionSettings, builds: Sequence[Build]
) -> dict[tuple[str, str, int], int]:
    starts: dict[tuple[str, str, int], int] = {}
    async with await _connect(settings) as conn:
        for b in builds:
            where = await versions.positions(settings, conn, PROJECTIONS[b.name], b.version)
            fresh = [p for p in where if p.checkpoint is None]
            at_time: dict[tuple[str, int], int] = {}
            if fresh and b.start_at is not None:
                async with standalone_consumer(settings) as consumer:
                    found = await consumer.offsets_for_times(
                        {
                            TopicPartition(p.topic, p.partition): int(b.start_at.timestamp() * 1000)
                            for p in fresh
                        }
                    )
                at_time = {(tp.topic, tp.partition): o.offset for tp, o in found.items() if o}
            for p in where:
                if p.checkpoint is not None:
                    start = p.checkpoint
                elif b.start_at is None:
                    start = p.log_start
                else:
                    start = at_time.get((p.topic, p.partition), p.log_end)
                starts[b.name, p.topic, p.partition] = start
    return starts


async def _connect(settings: ProjectionSettings, schema: str | None = None) -> AsyncConnection[Any]:
    return await database.connect(settings.require_database(), schema=schema)
