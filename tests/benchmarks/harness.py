"""The benchmark harness: figures and targets, each benchmark's context, and discovery.

A benchmark is a module ``tests/benchmarks/bench_<name>.py`` whose module docstring
says what it measures and which exposes::

    async def run(ctx: BenchmarkContext) -> list[Figure]

The runner (``python -m tests.benchmarks``) finds such modules by name, gives each
one its own topic prefix and its own migrated database (:func:`isolated_settings`),
and removes both afterwards. A benchmark builds its input before it starts a clock
and says in each figure's ``params`` what the timed region contains.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import logging
import math
import os
import pkgutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from psycopg import AsyncConnection

from infra.migrate import migrate
from services.settings import Settings
from streams.topics import Topics

logger = logging.getLogger(__name__)

MODULE_PREFIX = "bench_"
PACKAGE = "tests.benchmarks"


@dataclass(frozen=True)
class Target:
    """What a figure should be, e.g. ``<= 10`` (ms) or ``>= 20000`` (events/s)."""

    comparison: Literal["<=", ">="]
    value: float

    def met_by(self, value: float) -> bool:
        return value <= self.value if self.comparison == "<=" else value >= self.value

    def __str__(self) -> str:
        return f"{self.comparison} {self.value:,.{0 if self.value == int(self.value) else 3}f}"


def at_most(value: float) -> Target:
    return Target("<=", value)


def at_least(value: float) -> Target:
    return Target(">=", value)


@dataclass(frozen=True)
class Figure:
    """One measured number, with the conditions it was measured under."""

    benchmark: str
    metric: str
    value: float
    unit: str
    target: Target | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.target.met_by(self.value)

    def to_json(self) -> dict[str, Any]:
        """The JSON line printed on stdout."""
        return {
            "benchmark": self.benchmark,
            "metric": self.metric,
            "value": round(self.value, 4),
            "unit": self.unit,
            "target": None if self.target is None else str(self.target),
            "meets_target": self.meets_target,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class BenchmarkContext:
    """What a benchmark gets: its name and settings isolated to it."""

    name: str
    #: Own topic prefix and database (migrated, empty); topics are not created yet.
    settings: Settings
    #: Multiplies the benchmark's sizes (``--scale``); 1.0 for published figures.
    scale: float = 1.0

    def scaled(self, count: int) -> int:
        """A size of the benchmark, scaled by ``--scale`` (at least 1)."""
        return max(1, round(count * self.scale))

    def figure(
        self,
        metric: str,
        value: float,
        unit: str,
        target: Target | None = None,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> Figure:
        return Figure(self.name, metric, value, unit, target, dict(params or {}))


Run = Callable[[BenchmarkContext], Awaitable[list[Figure]]]


@dataclass(frozen=True)
class Benchmark:
    """A discovered ``bench_*`` module."""

    name: str  # the module name without ``bench_``: "append" for bench_append
    module: ModuleType

    @property
    def run(self) -> Run:
        run: Run = self.module.run
        return run

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.module.__doc__ or "").strip()


def discover() -> list[Benchmark]:
    """Every ``bench_*`` module of this package that has an ``async def run(ctx)``, by name."""
    package = importlib.import_module(PACKAGE)
    found: list[Benchmark] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith(MODULE_PREFIX):
            continue
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        if not inspect.iscoroutinefunction(getattr(module, "run", None)):
            raise TypeError(f"{module.__name__} must define `async def run(ctx) -> list[Figure]`")
        found.append(Benchmark(info.name.removeprefix(MODULE_PREFIX), module))
    return found


def select(benchmarks: Sequence[Benchmark], wanted: Sequence[str]) -> list[Benchmark]:
    """The benchmarks named (``bench_append`` or ``append``); all when none are named."""
    if not wanted:
        return list(benchmarks)
    by_name = {b.name: b for b in benchmarks}
    chosen: list[Benchmark] = []
    for name in wanted:
        short = name.removesuffix(".py").removeprefix(MODULE_PREFIX)
        if short not in by_name:
            known = ", ".join(MODULE_PREFIX + b.name for b in benchmarks)
            raise SystemExit(f"no benchmark {name!r}; known: {known}")
        chosen.append(by_name[short])
    return chosen


# -- isolation --------------------------------------------------------------------------


def database_url(url: str, database: str) -> str:
    """The same server's URL with another database name."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@asynccontextmanager
async def isolated_settings(base: Settings, benchmark: str) -> AsyncIterator[Settings]:
    """`base` with a topic prefix and a migrated database of their own; both removed after
    (``MEMSTREAM_BENCH_KEEP_DB=1`` keeps the database, named in the log, to profile the
    read models a benchmark loaded)."""
    name = f"bench_{benchmark}_{uuid.uuid4().hex[:8]}"
    admin_url = database_url(base.require_database(), "postgres")
    url = database_url(admin_url, name)
    async with await AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    settings = base.replace(topic_prefix=name.replace("_", "-"), database_url=url)
    try:
        await asyncio.to_thread(migrate, url)
        yield settings
    finally:
        if os.environ.get("MEMSTREAM_BENCH_KEEP_DB") == "1":
            logger.warning("kept database %s (MEMSTREAM_BENCH_KEEP_DB=1): drop it by hand", name)
        else:
            async with await AsyncConnection.connect(admin_url, autocommit=True) as conn:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await _delete_topics(settings)


async def _delete_topics(settings: Settings) -> None:
    """Remove the benchmark's topics: they hold 100,000s of events kept forever."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.require_kafka())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [t for t in Topics(settings.topic_prefix).all() if t in existing]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@contextmanager
def input_outside_gc() -> Iterator[None]:
    """Move everything alive now (the benchmark's pre-built input) out of the GC's walks.

    A service holds one request's events, not a benchmark's 100,000: without this the
    collector would keep traversing the input during the timed region.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# -- statistics -------------------------------------------------------------------------


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of non-empty samples."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
