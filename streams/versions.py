"""Projection versions: registration, the live switch, and catching up (the replay primitive).

A rebuild runs version N+1 of a projection into its own schema, from the earliest
offset or from a timestamp, while version N keeps serving through the read views
(``<projection>.<table>``). Once N+1 has caught up, :func:`switch_live` repoints the
views and flips the registry in ONE transaction: readers see N or N+1, never a mix.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, errors, sql
from psycopg.types.json import Jsonb

from streams import checkpoints
from streams.database import present_views
from streams.exceptions import StreamsError
from streams.offsets import log_extent
from streams.projection import Projection, version_schema
from streams.settings import StreamsSettings
from streams.topics import Topics

logger = logging.getLogger(__name__)


class VersionError(StreamsError):
    """A projection version is missing or in the wrong state for the operation."""


def _lock_key(projection: str) -> int:
    return zlib.crc32(f"memstream.projection:{projection}".encode())


async def register(
    conn: AsyncConnection[Any],
    projection: Projection,
    version: int,
    start_at: datetime | None = None,
    config: Mapping[str, Any] | None = None,
) -> str:
    """Create the version's schema and tables and record it; return its state.

    The first version ever registered for a projection becomes live at once (there is
    nothing else to serve); later ones start as ``building``. `config` (see
    :func:`config`) is recorded only by the first registration of a version.
    """
    schema = version_schema(projection.name, version)
    async with conn.transaction():
        # Serialise concurrent starters: CREATE ... IF NOT EXISTS races on the catalog.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(projection.name)])
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(
            sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
        )
        await conn.execute(projection.schema_sql())
        await conn.execute(
            "INSERT INTO memstream.projection_versions (projection, version, state, start_at,"
            " config) VALUES (%s, %s, 'building', %s, %s) ON CONFLICT DO NOTHING",
            [projection.name, version, start_at, Jsonb(dict(config or {}))],
        )
        cursor = await conn.execute(
            "SELECT version FROM memstream.projection_versions"
            " WHERE projection = %s AND state = 'live'",
            [projection.name],
        )
        if await cursor.fetchone() is None:
            await _make_live(conn, projection, version)
            return "live"
        cursor = await conn.execute(
            "SELECT state FROM memstream.projection_versions"
            " WHERE projection = %s AND version = %s",
            [projection.name, version],
        )
        row = await cursor.fetchone()
        assert row is not None
        if row[0] == "live":
            await _add_missing_views(conn, projection, version)
        return str(row[0])


async def _add_missing_views(
    conn: AsyncConnection[Any], projection: Projection, version: int
) -> None:
    """Give the live version's tables that have no view one: a table the projection added
    to its schema after the version went live (``CREATE TABLE IF NOT EXISTS`` in its
    ``schema_sql``, e.g. ``conversations.passage_stats``) is readable from its next start."""
    present = await present_views(conn, [f"{projection.name}.{t}" for t in projection.tables])
    for table in projection.tables:
        if f"{projection.name}.{table}" not in present:
            target, origin = _view(projection, version, table)
            await conn.execute(sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(target, origin))


def _view(
    projection: Projection | type[Projection], version: int, table: str
) -> tuple[sql.Composed, sql.Composed]:
    """The read view of `table` (``<projection>.<table>``) and the version's table it shows."""
    name = sql.Identifier(table)
    return (
        sql.SQL("{}.{}").format(sql.Identifier(projection.name), name),
        sql.SQL("{}.{}").format(sql.Identifier(version_schema(projection.name, version)), name),
    )


async def config(conn: AsyncConnection[Any], projection: str, version: int) -> dict[str, Any]:
    """What a version was registered with (``{}`` if nothing, or if it is not registered):

    - ``settings``: overrides of :class:`StreamsSettings` fields (e.g. ``{"llm_model": "gpt-4o"}``
      for an extraction version that runs the LLM extractor, ``{"llm_model": None}`` for
      one that runs the rules); a version runs the same way whatever the environment says;
    - ``follows``: ``{processor: version}``, the version of each upstream processor whose
      derived events this version reads (see :mod:`streams.lineage`).
    """
    cursor = await conn.execute(
        "SELECT config FROM memstream.projection_versions WHERE projection = %s AND version = %s",
        [projection, version],
    )
    row = await cursor.fetchone()
    return dict(row[0]) if row else {}


async def live_version(conn: AsyncConnection[Any], projection: str) -> int | None:
    cursor = await conn.execute(
        "SELECT version FROM memstream.projection_versions"
        " WHERE projection = %s AND state = 'live'",
        [projection],
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else None


async def live_projections(conn: AsyncConnection[Any]) -> list[str]:
    """The projections that have a live version, by name."""
    cursor = await conn.execute(
        "SELECT projection FROM memstream.projection_versions WHERE state = 'live'"
    )
    return sorted(row[0] for row in await cursor.fetchall())


async def live_checkpoints(
    conn: AsyncConnection[Any],
    projections: Sequence[str] | None = None,
    topics: Sequence[str] | None = None,
) -> dict[str, dict[tuple[str, int], int]]:
    """The next offset each live projection version will read, by projection and
    (topic, partition); only of `projections` and `topics` when given."""
    cursor = await conn.execute(
        "SELECT v.projection, c.topic, c.partition, c.next_offset"
        "  FROM memstream.projection_versions v"
        "  JOIN memstream.checkpoints c"
        "    ON c.projection = v.projection AND c.version = v.version"
        " WHERE v.state = 'live'"
        "   AND (%(projections)s::text[] IS NULL OR v.projection = ANY(%(projections)s))"
        "   AND (%(topics)s::text[] IS NULL OR c.topic = ANY(%(topics)s))",
        {
            "projections": None if projections is None else list(projections),
            "topics": None if topics is None else list(topics),
        },
    )
    done: dict[str, dict[tuple[str, int], int]] = {}
    for projection, topic, partition, offset in await cursor.fetchall():
        done.setdefault(projection, {})[(topic, partition)] = offset
    return done


async def switch_live(
    conn: AsyncConnection[Any], projection: Projection | type[Projection], version: int
) -> None:
    """Make `version` the live one: registry and read views change in one transaction."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(projection.name)])
        cursor = await conn.execute(
            "SELECT state FROM memstream.projection_versions"
            " WHERE projection = %s AND version = %s FOR UPDATE",
            [projection.name, version],
        )
        row = await cursor.fetchone()
        if row is None:
            raise VersionError(f"{projection.name} v{version} is not registered")
        if row[0] == "live":
            return
        await conn.execute(
            "UPDATE memstream.projection_versions SET state = 'retired'"
            " WHERE projection = %s AND state = 'live'",
            [projection.name],
        )
        await _make_live(conn, projection, version)


async def drop_version(
    conn: AsyncConnection[Any], projection: Projection | type[Projection], version: int
) -> None:
    """Drop a version that is not live: its schema, registry row and checkpoints."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(projection.name)])
        if await live_version(conn, projection.name) == version:
            raise VersionError(f"{projection.name} v{version} is live; switch first")
        schema = version_schema(projection.name, version)
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
        await conn.execute(
            "DELETE FROM memstream.projection_versions WHERE projection = %s AND version = %s",
            [projection.name, version],
        )


async def _make_live(
    conn: AsyncConnection[Any], projection: Projection | type[Projection], version: int
) -> None:
    await conn.execute(
        "UPDATE memstream.projection_versions SET state = 'live', live_since = now()"
        " WHERE projection = %s AND version = %s",
        [projection.name, version],
    )
    await conn.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(projection.name))
    )
    for table in projection.tables:
        target, origin = _view(projection, version, table)
        try:
            # Same columns: replaced in place, readers never see the view missing.
            async with conn.transaction():
                await conn.execute(
                    sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT * FROM {}").format(target, origin)
                )
        except (errors.InvalidTableDefinition, errors.DuplicateColumn, errors.DatatypeMismatch):
            # The new version changed the table's columns: replace the view; still atomic,
            # since we are inside the switching transaction.
            await conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(target))
            await conn.execute(sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(target, origin))


@dataclass(frozen=True)
class VersionInfo:
    """A row of the registry (``memstream.projection_versions``)."""

    projection: str
    version: int
    state: str
    start_at: datetime | None
    created_at: datetime
    live_since: datetime | None
    config: dict[str, Any]
    last_error: str | None
    last_error_at: datetime | None


async def registry(conn: AsyncConnection[Any], projection: str | None = None) -> list[VersionInfo]:
    """Every registered version (of one projection, or of all), by projection and version."""
    cursor = await conn.execute(
        "SELECT projection, version, state, start_at, created_at, live_since, config,"
        " last_error, last_error_at FROM memstream.projection_versions"
        " WHERE %s::text IS NULL OR projection = %s ORDER BY projection, version",
        [projection, projection],
    )
    return [VersionInfo(*row) for row in await cursor.fetchall()]


async def next_version(conn: AsyncConnection[Any], projection: str) -> int:
    """One more than the highest version ever registered (1 for a new projection)."""
    cursor = await conn.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM memstream.projection_versions"
        " WHERE projection = %s",
        [projection],
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class PartitionPosition:
    """Where a version is in one partition: the partition's first and next offsets, and
    the version's checkpoint (None before the version first ran on it)."""

    topic: str
    partition: int
    log_start: int
    log_end: int
    checkpoint: int | None

    @property
    def lag(self) -> int:
        done = self.log_start if self.checkpoint is None else self.checkpoint
        return max(0, self.log_end - done)


async def positions(
    settings: StreamsSettings,
    conn: AsyncConnection[Any],
    projection: Projection | type[Projection],
    version: int,
) -> list[PartitionPosition]:
    """The version's checkpoint against the log, per partition of the topics it reads."""
    topics = Topics(settings.topic_prefix)
    extent = await log_extent(settings, [topics.name(t) for t in projection.topics])
    done = await checkpoints.read(conn, projection.name, version)
    return [
        PartitionPosition(topic, partition, start, end, done.get((topic, partition)))
        for (topic, partition), (start, end) in sorted(extent.items())
    ]


async def lag(
    settings: StreamsSettings,
    conn: AsyncConnection[Any],
    projection: Projection | type[Projection],
    version: int,
) -> dict[tuple[str, int], int]:
    """Events not yet projected by a version, per partition (log end minus checkpoint)."""
    return {
        (p.topic, p.partition): p.lag for p in await positions(settings, conn, projection, version)
    }


async def wait_caught_up(
    settings: StreamsSettings,
    conn: AsyncConnection[Any],
    projection: Projection,
    version: int,
    timeout: float,
    poll: float = 0.2,
) -> None:
    """Wait until the version has projected everything in the log (raises TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = sum((await lag(settings, conn, projection, version)).values())
        if remaining == 0:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{projection.name} v{version} still {remaining} events behind")
        await asyncio.sleep(poll)
