"""The services' PostgreSQL pool, and what a request answers when the database is down.

Both services read PostgreSQL through one :func:`connection_pool`. A checkout waits at
most ``MEMSTREAM_DATABASE_CHECKOUT_TIMEOUT_S`` (2 s by default, psycopg_pool's own
default is 30 s): when the database is down or every connection is busy, a request is
answered ``503 database_unavailable`` with ``Retry-After`` within seconds, instead of
holding its client for half a minute and then failing with a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.settings import Settings
from streams import DatabaseUnavailable, database

__all__ = ["RETRY_AFTER_S", "add_unavailable_handler", "connection_pool", "unavailable"]

logger = logging.getLogger(__name__)

#: What ``Retry-After`` says on a 503 database_unavailable.
RETRY_AFTER_S = 5


def connection_pool(
    settings: Settings, *, min_size: int, max_size: int = 10
) -> AsyncConnectionPool[Any]:
    """A pool of autocommit connections (not opened: the service opens it when it starts)
    whose checkouts wait at most ``settings.database_checkout_timeout_s``
    (``streams.database.connection_pool``)."""
    return database.connection_pool(
        settings.require_database(),
        min_size=min_size,
        max_size=max_size,
        timeout=settings.database_checkout_timeout_s,
    )


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (answer 503), not that a
    query is wrong (a 500, and a bug to fix)."""
    if isinstance(exc, PoolTimeout | DatabaseUnavailable):
        # DatabaseUnavailable: the personal data key store's own connection (sealing an
        # event to append it) could not reach the database.
        return True
    return database.unreachable(exc)


def add_unavailable_handler(app: FastAPI, rejected: Counter) -> None:
    """Answer ``503 database_unavailable`` (with ``Retry-After``) when a request fails
    because the database is unreachable; count it in ``rejected{route, code}``. Other
    database errors stay 500s."""

    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(psycopg.OperationalError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not unavailable(exc):
            raise exc
        route = getattr(request.scope.get("route"), "path", "unmatched")
        rejected.labels(route, "database_unavailable").inc()
        logger.warning(
            "database unavailable: %s",
            f"{type(exc).__name__}: {exc}".strip(),
            extra={"route": route, "code": "database_unavailable"},
        )
        return JSONResponse(
            {
                "error": {
                    "code": "database_unavailable",
                    "message": "the database is unavailable; retry later",
                }
            },
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
