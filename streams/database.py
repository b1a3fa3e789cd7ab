"""Connecting to PostgreSQL the way every memstream process does: autocommit, a bounded
connect time, and an unreachable server reported as DatabaseUnavailable."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection

from streams.exceptions import DatabaseUnavailable


async def connect(url: str, *, schema: str | None = None) -> AsyncConnection[Any]:
    """An autocommit connection; with `schema`, unqualified names resolve in it first
    (a projection version's tables), set at connection start so no statement pays a
    round trip for it."""
    options = f"-c search_path={schema},public" if schema else ""
    try:
        return await AsyncConnection.connect(
            url, autocommit=True, connect_timeout=10, options=options
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(url, str(exc).strip()) from exc
