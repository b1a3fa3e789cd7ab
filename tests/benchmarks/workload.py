"""Inputs the benchmarks share: realistic calls, built with the test suite's event helpers."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from schemas import Event, encode_event
from tests.helpers import call_events

#: Turns per ended call; one tenant per count keeps conversation ids unique in the mix.
TURN_COUNTS = range(6, 11)
CALLERS_PER_TENANT = 2_000
MIX = "50% conversation.started, 50% conversation.ended (6-10 turns, 8 on average)"


def realistic_calls(calls: int, tenant_prefix: str = "bench") -> list[Event]:
    """`calls` calls (started + ended each), 6 to 10 turns, 2,000 callers per tenant."""
    events: list[Event] = []
    for k, turns in enumerate(TURN_COUNTS):
        share = calls // len(TURN_COUNTS) + (1 if k < calls % len(TURN_COUNTS) else 0)
        events += call_events(
            f"{tenant_prefix}{turns}", share, turns=turns, users=CALLERS_PER_TENANT
        )
    return events


def realistic_events(count: int) -> list[Event]:
    """`count` events of :func:`realistic_calls` (an odd count ends on a started call)."""
    return realistic_calls((count + 1) // 2)[:count]


def mean_bytes(events: Sequence[Event]) -> int:
    """Mean size of the events on the wire."""
    return round(statistics.fmean(len(encode_event(e)) for e in events))
