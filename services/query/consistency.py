"""Read-your-writes: wait until the read models a request reads have passed a log position.

The ingest service (and the query service's own writes) answer with the log position of
what they appended, ``topic:partition:offset``. A request that sends it back (header
``X-Memstream-After``, or ``?after=``; several, comma-separated) is answered only once
every projection it reads that consumes that topic has a checkpoint past the offset,
for its live version. The wait is bounded (``X-Memstream-Wait-Ms``, default 2 s, at most
10 s); on timeout the answer is 409 with where each projection is.

What this covers: the write's own effect on the read models that consume its topic (a
conversation in the conversations read model, an asserted memory in the memories read
model). Results *derived* from it by a processor (memories extracted from a call, the
embedding of an asserted memory) are appended later to other topics under positions the
writer never saw; they follow within the pipeline's freshness (docs/benchmarks.md).

What a wait may hold, since any client can ask for one: a request names at most
``MAX_POSITIONS`` positions (422 ``too_many_positions`` beyond); an API key has at most
``MEMSTREAM_QUERY_MAX_WAITS`` waits in progress (429 ``too_many_waits`` beyond, see
:class:`WaitSlots`); and a wait holds no database connection while it sleeps: each poll
checks one out, reads every checkpoint it needs in one query, and returns it, so
waiting requests never starve the pool the other requests read through.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.errors import ApiError
from streams import versions

__all__ = [
    "DEFAULT_WAIT_MS",
    "MAX_POSITIONS",
    "MAX_WAIT_MS",
    "Position",
    "WaitSlots",
    "parse_positions",
    "wait_until_past",
]

DEFAULT_WAIT_MS = 2000
MAX_WAIT_MS = 10_000
MAX_POSITIONS = 16
# Polls start quickly (a projection usually passes a fresh write within a batch, tens of
# milliseconds) and back off: a long wait costs a query every 200 ms, not every 20.
_FIRST_POLL_S = 0.02
_MAX_POLL_S = 0.2
_POLL_BACKOFF = 1.5
_TOKEN = re.compile(r"^([A-Za-z0-9._-]{1,249}):(\d{1,9}):(\d{1,19})$")


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int

    def token(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def parse_positions(raw: str | None, topic_prefix: str) -> list[Position]:
    """The positions in a header/parameter value (422 when one is not ours or malformed)."""
    if raw is None or not raw.strip():
        return []
    tokens = raw.split(",")
    if len(tokens) > MAX_POSITIONS:
        raise ApiError(
            422,
            "too_many_positions",
            f"at most {MAX_POSITIONS} positions a request, got {len(tokens)}: send the latest"
            " position of each partition written to",
            path="after",
        )
    positions = []
    for token in tokens:
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            raise ApiError(
                422, "invalid_position", f"{token.strip()!r} is not topic:partition:offset",
                path="after",
            )  # fmt: skip
        topic = match[1]
        if not topic.startswith(topic_prefix + "."):
            raise ApiError(
                422, "invalid_position", f"{topic!r} is not one of this deployment's topics",
                path="after",
            )  # fmt: skip
        positions.append(Position(topic, int(match[2]), int(match[3])))
    return positions


def parse_wait_ms(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_WAIT_MS
    # ASCII digits only, and few: int() refuses "²" and strings of over 4300 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or int(raw) > MAX_WAIT_MS:
        raise ApiError(
            422, "invalid_wait", f"X-Memstream-Wait-Ms must be 0..{MAX_WAIT_MS}", path="wait_ms"
        )
    return int(raw)


class WaitSlots:
    """Read-your-writes waits in progress, per API key: at most ``per_key`` at once.

    A far-future position makes a request wait its whole ``X-Memstream-Wait-Ms``; this
    bounds how many such requests one key keeps open (each is a task and a poll every
    200 ms). Beyond it a wait is refused with 429 ``too_many_waits`` and ``Retry-After``,
    like a key over its rate: the key asks for more than its share, the service is fine.
    """

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._waiting: Counter[str] = Counter()

    @contextmanager
    def hold(self, key_id: str) -> Iterator[None]:
        """One of the key's slots for the duration of a wait (429 when it has none left)."""
        if self._waiting[key_id] >= self.per_key:
            raise ApiError(
                429,
                "too_many_waits",
                f"this API key already has {self.per_key} read-your-writes waits in progress;"
                " retry later",
                path="after",
                headers={"Retry-After": "1"},
            )
        self._waiting[key_id] += 1
        try:
            yield
        finally:
            self._waiting[key_id] -= 1
            if not self._waiting[key_id]:
                del self._waiting[key_id]


async def _behind(
    pool: AsyncConnectionPool[Any], readers: dict[str, tuple[str, ...]], positions: list[Position],
    topic_prefix: str,
) -> dict[str, str]:  # fmt: skip
    """Projections still at or before a position: name -> its checkpoint there.

    One query, on a connection held only for it. A projection without a live version,
    or without a checkpoint on the position's partition, is at offset 0.
    """
    consumers = {
        position: [
            projection
            for projection, topics in readers.items()
            if position.topic.removeprefix(topic_prefix + ".") in topics
        ]
        for position in positions
    }
    wanted = sorted({projection for names in consumers.values() for projection in names})
    if not wanted:
        return {}
    async with pool.connection() as conn:
        reached = await versions.live_checkpoints(
            conn, wanted, sorted({position.topic for position in positions})
        )
    behind: dict[str, str] = {}
    for position, names in consumers.items():
        for projection in names:
            done = reached.get(projection, {})
            next_offset = done.get((position.topic, position.partition), 0)
            if next_offset <= position.offset:
                behind[projection] = f"{position.topic}:{position.partition}:{next_offset}"
    return behind


async def wait_until_past(
    pool: AsyncConnectionPool[Any],
    readers: dict[str, tuple[str, ...]],
    positions: list[Position],
    *,
    topic_prefix: str,
    wait_ms: int,
    slot: AbstractContextManager[None],
) -> None:
    """Return once every reader consuming a position's topic is past it; 409 on timeout.

    ``readers`` maps the projections a route reads to the logical topics each consumes.
    ``slot`` (e.g. :meth:`WaitSlots.hold`) is entered only if the request has to wait:
    a position already reached costs one query and no slot.
    """
    if not positions:
        return
    deadline = time.monotonic() + wait_ms / 1000
    behind = await _behind(pool, readers, positions, topic_prefix)
    if behind and wait_ms > 0:
        with slot:
            pause = _FIRST_POLL_S
            while behind and (left := deadline - time.monotonic()) > 0:
                # 1. sleep holding no connection; 2. check one out, read, return it.
                await asyncio.sleep(min(pause, left))
                pause = min(pause * _POLL_BACKOFF, _MAX_POLL_S)
                behind = await _behind(pool, readers, positions, topic_prefix)
    if behind:
        raise ApiError(
            409,
            "not_yet_consistent",
            f"the read models have not reached the position within {wait_ms} ms: "
            + ", ".join(f"{name} is at {at}" for name, at in sorted(behind.items())),
            path="after",
            details={"positions": behind},
        )
