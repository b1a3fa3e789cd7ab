"""Connecting to PostgreSQL the way every memstream process does: autocommit, a bounded
connect time, and an unreachable server reported as DatabaseUnavailable.

Every connection of production code is opened here: :func:`connect` (the runtime, the
CLI, retention), :func:`connect_beside` (a second connection next to a runtime
transaction), :func:`connect_sync` (migrations, the subject key store, the local
launcher) and :func:`connection_pool` (the services' pool, ``services.database``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from streams.exceptions import DatabaseUnavailable

__all__ = ["connect", "connect_beside", "connect_sync", "connection_pool", "present_views"]

#: Seconds a connection attempt may take, unless a caller says otherwise.
CONNECT_TIMEOUT_S = 10


async def connect(
    url: str, *, schema: str | None = None, connect_timeout: int | None = CONNECT_TIMEOUT_S
) -> AsyncConnection[Any]:
    """An autocommit connection; with `schema`, unqualified names resolve in it first
    (a projection version's tables), set at connection start so no statement pays a
    round trip for it. `connect_timeout` None: libpq's own (no limit)."""
    options = f"-c search_path={schema},public" if schema else ""
    try:
        return await AsyncConnection.connect(
            url, autocommit=True, connect_timeout=connect_timeout, options=options
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(url, str(exc).strip()) from exc


async def connect_beside(conn: AsyncConnection[Any]) -> AsyncConnection[Any]:
    """A second autocommit connection to `conn`'s database as `conn`'s user, committing
    independently of `conn`'s transaction (no connect timeout of its own).

    Its failure stays a ``psycopg.OperationalError``: inside a projection's ``apply``,
    that is what tells the runtime the database is unreachable (reconnect and retry the
    batch), where any other error would make the batch poison."""
    return await AsyncConnection.connect(
        conn.info.dsn, password=conn.info.password, autocommit=True
    )


def connect_sync(
    url: str, *, connect_timeout: int | None = CONNECT_TIMEOUT_S
) -> psycopg.Connection[Any]:
    """A blocking autocommit connection (worker threads, migrations, the launcher);
    `connect_timeout` None: libpq's own (no limit)."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(url, str(exc).strip()) from exc


def connection_pool(
    url: str, *, min_size: int, max_size: int, timeout: float
) -> AsyncConnectionPool[Any]:
    """A pool of autocommit connections, not opened (its owner opens it when it starts),
    whose checkouts wait at most `timeout` seconds."""
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=timeout,
        kwargs={"autocommit": True},
    )


async def present_views(conn: AsyncConnection[Any], views: Sequence[str]) -> set[str]:
    """The read views among `views` that exist (a deployment may not run every read model)."""
    cursor = await conn.execute(
        "SELECT v FROM unnest(%s::text[]) AS v WHERE to_regclass(v) IS NOT NULL", [list(views)]
    )
    return {row[0] for row in await cursor.fetchall()}


# SQLSTATEs of an OperationalError that mean "the database cannot serve", not "this
# statement failed": connection exceptions (08...), the server shutting down or starting
# (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now), and no
# connection slot left (53300 too_many_connections). Other OperationalErrors are about
# the statement: 54000 program_limit_exceeded (a value too long for an index), 57014
# query_canceled...
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc``, an error of psycopg, means the database cannot be reached or
    cannot serve (no SQLSTATE: the client lost or could not open the connection), rather
    than that a statement failed."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return exc.sqlstate is None or exc.sqlstate.startswith(_UNREACHABLE_STATES)
