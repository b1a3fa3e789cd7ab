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
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from services.errors import ApiError

__all__ = ["DEFAULT_WAIT_MS", "MAX_WAIT_MS", "Position", "parse_positions", "wait_until_past"]

DEFAULT_WAIT_MS = 2000
MAX_WAIT_MS = 10_000
_POLL_S = 0.02
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
    positions = []
    for token in raw.split(","):
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
    if not raw.isdigit() or int(raw) > MAX_WAIT_MS:
        raise ApiError(
            422, "invalid_wait", f"X-Memstream-Wait-Ms must be 0..{MAX_WAIT_MS}", path="wait_ms"
        )
    return int(raw)


async def _behind(
    conn: AsyncConnection[Any], readers: dict[str, tuple[str, ...]], positions: list[Position],
    topic_prefix: str,
) -> dict[str, str]:  # fmt: skip
    """Projections still at or before a position: name -> its checkpoint there."""
    behind: dict[str, str] = {}
    for position in positions:
        logical = position.topic.removeprefix(topic_prefix + ".")
        for projection, topics in readers.items():
            if logical not in topics:
                continue
            cursor = await conn.execute(
                """
                SELECT c.next_offset
                  FROM memstream.projection_versions v
                  LEFT JOIN memstream.checkpoints c
                    ON c.projection = v.projection AND c.version = v.version
                   AND c.topic = %s AND c.partition = %s
                 WHERE v.projection = %s AND v.state = 'live'
                """,
                [position.topic, position.partition, projection],
            )
            row = await cursor.fetchone()
            next_offset = row[0] if row and row[0] is not None else 0
            if next_offset <= position.offset:
                behind[projection] = f"{position.topic}:{position.partition}:{next_offset}"
    return behind


async def wait_until_past(
    conn: AsyncConnection[Any],
    readers: dict[str, tuple[str, ...]],
    positions: list[Position],
    *,
    topic_prefix: str,
    wait_ms: int,
) -> None:
    """Return once every reader consuming a position's topic is past it; 409 on timeout.

    ``readers`` maps the projections a route reads to the logical topics each consumes.
    """
    if not positions:
        return
    deadline = time.monotonic() + wait_ms / 1000
    while True:
        behind = await _behind(conn, readers, positions, topic_prefix)
        if not behind:
            return
        if time.monotonic() >= deadline:
            raise ApiError(
                409,
                "not_yet_consistent",
                f"the read models have not reached the position within {wait_ms} ms: "
                + ", ".join(f"{name} is at {at}" for name, at in sorted(behind.items())),
                path="after",
                details={"positions": behind},
            )
        await asyncio.sleep(_POLL_S)
