"""Personal data encryption (streams/subject_keys.py) on and off: what sealing costs an
append, and what opening costs the projections' hot path.

- **append**: single `EventLog.append` calls, each awaited until the broker acknowledged
  it: 1,000 callers call twice (`conversation.started` + `.ended` with 8 turns each call),
  every first call before any second one, after a warm-up of 200 appends. Off and on
  alternate over 3 rounds, each round on topics and callers of its own; a figure is over
  a variant's samples of all rounds. Known callers (their second call: the key is in
  memory) and new callers (their first: with encryption on, the key is created, one
  insert committed before the event is sealed) are figures of their own.
- **rebuild**: the conversations projection catching up from offset 0 on 20,000 events
  (10,000 calls of 6-10 turns, 10,000 callers, 6 partitions), appended plain (off) or
  sealed (on) beforehand; each variant three times, alternating, each run a projection version
  of its own on topics of its own, with a key store started cold (one query per caller's
  key). Events/s from the first partition assignment until every checkpoint reached
  the log end; the figure is the median of the three runs (of two, the median is
  their mean, which one slow run moves). Also the CPU time this process
  (the runner: fetching, decoding, folding; not PostgreSQL, not the broker) spent per
  event over that span: on a machine whose two cores the broker, the database and other
  work share, wall-clock throughput varies by ±15% from run to run, CPU time far less.

The targets are on the ratios: encryption on at most 15% slower than off.

Transcripts are also sealed with a key of the UTC day their call began in
(docs/architecture.md, "Retention"); a day's first transcript has the next day's key made
in the background. The append workload runs twice per round and variant: with calls a
minute apart (a busy tenant's traffic: no new day within a round; the figures with the
target), and with calls an hour apart (``tests.helpers.call_events``' default: a new UTC
day every 24 calls, ~20 a round, where live traffic meets one a day per tenant), whose
known-caller figures show what making the days' keys costs the appends beside it. The
rebuild loads the keys of the days it meets with the callers' (one query a batch).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from projections.conversations import ConversationsProjection
from schemas import Event, IdentityCodec, get_personal_codec, set_personal_codec
from services.settings import Settings
from streams.producer import EventLog
from streams.runtime import ProjectionRunner
from streams.subject_keys import SubjectKeyCodec, install_personal_codec
from streams.topics import ensure_topics
from tests.benchmarks.harness import (
    BenchmarkContext,
    Figure,
    _delete_topics,
    at_least,
    at_most,
    input_outside_gc,
    percentile,
)
from tests.benchmarks.workload import MIX, mean_bytes, realistic_events
from tests.helpers import call_events

logger = logging.getLogger(__name__)

SINGLE_WARMUP = 200
#: 1,000: a p99 over 3,000 samples a variant. With 250 (750 samples, the p99 is about
#: the eighth worst), the known-caller ratio ranged 0.81-1.38 over fourteen runs.
CALLERS = 1000
APPEND_ROUNDS = 3
REBUILD_EVENTS = 20_000
REBUILD_ROUNDS = 3
APPEND_CHUNK = 5_000
POLL_SECONDS = 0.01
TIMEOUT_SECONDS = 600.0
#: Encryption on may cost at most this much (a ratio of on to off).
SLOWER_AT_MOST = 1.15
VARIANTS = ("off", "on")
#: How far apart the append workload's calls are: "minute" (the target's), "hour".
SPACINGS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}


async def run(ctx: BenchmarkContext) -> list[Figure]:
    previous = get_personal_codec()
    try:
        return [*await _appends(ctx), *await _rebuilds(ctx)]
    finally:
        _set(ctx.settings, "off")
        set_personal_codec(previous)


def _set(settings: Settings, variant: str) -> Settings:
    """Install the variant's codec (a fresh key store, its cache cold, when on); return
    the settings its processes run with."""
    current = get_personal_codec()
    set_personal_codec(IdentityCodec())
    if isinstance(current, SubjectKeyCodec):
        current.store.close()
    if variant == "off":
        return settings.replace(personal_data_encryption=False)
    install_personal_codec(settings, check=True)
    return settings


def _variant_settings(ctx: BenchmarkContext, what: str, variant: str, rnd: int) -> Settings:
    return ctx.settings.replace(topic_prefix=f"{ctx.settings.topic_prefix}-{what}{rnd}{variant}")


# -- appends ---------------------------------------------------------------------------------


async def _appends(ctx: BenchmarkContext) -> list[Figure]:
    callers, warmup = ctx.scaled(CALLERS), ctx.scaled(SINGLE_WARMUP)
    # timed[variant][(phase, spacing)]: milliseconds of each append.
    timed: dict[str, dict[tuple[str, str], list[float]]] = {v: {} for v in VARIANTS}
    sizes: dict[str, int] = {}
    for rnd in range(APPEND_ROUNDS):
        for variant in VARIANTS:
            for spacing, apart in SPACINGS.items():
                name = f"{spacing}{rnd}{variant}"
                settings = _set(_variant_settings(ctx, "append", name, 0), variant)
                # Callers of their own per round: each calls twice, all first calls before
                # any second one (call i is caller i % callers').
                calls = call_events(f"a{name}", 2 * callers, turns=8, users=callers, spacing=apart)
                warm = call_events(f"w{name}", warmup // 2, turns=8, spacing=apart)
                sizes[variant] = mean_bytes(calls[:200])
                await ensure_topics(settings)
                try:
                    latencies = await _time_appends(settings, warm, calls)
                finally:
                    await _delete_topics(settings)
                half = len(calls) // 2
                timed[variant].setdefault(("new", spacing), []).extend(latencies[:half])
                timed[variant].setdefault(("known", spacing), []).extend(latencies[half:])
                logger.info(
                    "appends, encryption %s, calls a%s %s apart, round %d: p99 %.2f ms (new"
                    " callers), %.2f ms (known)",
                    variant,
                    "n" if spacing == "hour" else "",
                    spacing,
                    rnd + 1,
                    percentile(latencies[:half], 99),
                    percentile(latencies[half:], 99),
                )
    params: dict[str, Any] = {
        "callers_per_round": callers,
        "appends_per_round_and_spacing": 4 * callers,
        "spacings": {"minute": "calls a minute apart (the target's)", "hour": "an hour apart"},
        "warmup": warmup,
        "rounds": APPEND_ROUNDS,
        "producer": "EventLog(settings) defaults: acks=all, idempotent, linger_ms=0",
        "mean_event_bytes": sizes,
        "timed": "each append() from call to acknowledgement, sealing (and key creation) included",
    }
    figures: list[Figure] = []
    for phase, spacing, what in (
        ("known", "minute", "a known caller"),
        ("new", "minute", "a new caller's first call"),
        ("known", "hour", "a known caller, calls an hour apart (a new day every 24)"),
    ):
        p99 = {v: percentile(timed[v][(phase, spacing)], 99) for v in VARIANTS}
        p50 = {v: percentile(timed[v][(phase, spacing)], 50) for v in VARIANTS}
        for v in VARIANTS:
            figures.append(ctx.figure(f"single append p99, {what}, encryption {v}", p99[v], "ms",
                                      params=params))  # fmt: skip
            figures.append(ctx.figure(f"single append p50, {what}, encryption {v}", p50[v], "ms",
                                      params=params))  # fmt: skip
        figures.append(
            ctx.figure(
                f"single append p99, {what}, on / off",
                p99["on"] / p99["off"],
                "ratio",
                at_most(SLOWER_AT_MOST) if (phase, spacing) == ("known", "minute") else None,
                params=params,
            )
        )
    return figures


async def _time_appends(
    settings: Settings, warm: Sequence[Event], events: Sequence[Event]
) -> list[float]:
    """Milliseconds of each append of `events`, after appending `warm` untimed."""
    latencies: list[float] = []
    with input_outside_gc():
        async with EventLog(settings) as log:
            for event in warm:
                await log.append(event)
            for event in events:
                began = time.perf_counter()
                await log.append(event)
                latencies.append((time.perf_counter() - began) * 1000)
    return latencies


# -- rebuilds --------------------------------------------------------------------------------


async def _rebuilds(ctx: BenchmarkContext) -> list[Figure]:
    total = ctx.scaled(REBUILD_EVENTS)
    events = realistic_events(total)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu_us: dict[str, list[float]] = {v: [] for v in VARIANTS}
    version = 0
    for rnd in range(REBUILD_ROUNDS):
        for variant in VARIANTS:
            version += 1
            settings = _set(_variant_settings(ctx, "rebuild", variant, rnd), variant)
            await ensure_topics(settings)
            try:
                ends = await _append(settings, events)
                # Opening starts cold, as in a process that rebuilds: a fresh key store.
                settings = _set(settings, variant)
                gc.collect()
                rate, cpu = await _catch_up(settings, version, total, ends)
                rates[variant].append(rate)
                cpu_us[variant].append(cpu * 1e6 / total)
            finally:
                await _delete_topics(settings)
            logger.info(
                "rebuild, encryption %s, round %d: %.0f events/s, runner CPU %.0f µs/event",
                variant,
                rnd + 1,
                rates[variant][-1],
                cpu_us[variant][-1],
            )
    median = {v: statistics.median(rates[v]) for v in VARIANTS}
    cpu = {v: statistics.median(cpu_us[v]) for v in VARIANTS}
    params: dict[str, Any] = {
        "events": total,
        "mix": MIX,
        "callers": 10_000,
        "partitions": ctx.settings.partitions,
        "batch_max_records": ctx.settings.batch_max_records,
        "rounds": REBUILD_ROUNDS,
        "samples_events_per_s": {v: [round(r) for r in rates[v]] for v in VARIANTS},
        "samples_runner_cpu_us_per_event": {v: [round(c) for c in cpu_us[v]] for v in VARIANTS},
        "timed": "first assignment until every checkpoint is at the log end (median)",
    }
    return [
        *(
            ctx.figure(f"rebuild throughput, encryption {v}", median[v], "events/s", params=params)
            for v in VARIANTS
        ),
        ctx.figure(
            "rebuild throughput, on / off",
            median["on"] / median["off"],
            "ratio",
            at_least(1 / SLOWER_AT_MOST),
            params=params,
        ),
        *(
            ctx.figure(
                f"rebuild, runner CPU per event, encryption {v}", cpu[v], "µs", params=params
            )
            for v in VARIANTS
        ),
    ]


async def _append(settings: Settings, events: Sequence[Event]) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    async with EventLog(settings, linger_ms=5) as log:
        for start in range(0, len(events), APPEND_CHUNK):
            for p in await log.append_many(events[start : start + APPEND_CHUNK]):
                key = (p.topic, p.partition)
                ends[key] = max(ends.get(key, 0), p.offset + 1)
    return ends


async def _catch_up(
    settings: Settings, version: int, total: int, ends: dict[tuple[str, int], int]
) -> tuple[float, float]:
    """(events/s, this process's CPU seconds) from the first assignment to caught up."""
    runner = ProjectionRunner(ConversationsProjection(), settings, version=version)
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        deadline = time.perf_counter() + TIMEOUT_SECONDS
        began: float | None = None
        cpu_began = time.process_time()
        # Polled: the runner's positions are plain attributes, nothing signals them.
        while not all(runner.positions.get(tp, -1) >= end for tp, end in ends.items()):
            if began is None and runner.positions:
                began = time.perf_counter()  # the first assignment
                cpu_began = time.process_time()
            if task.done() or time.perf_counter() > deadline:
                raise RuntimeError("the runner did not catch up")
            await asyncio.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - (began or time.perf_counter())
        return total / seconds, time.process_time() - cpu_began
    finally:
        runner.stop()
        await task
