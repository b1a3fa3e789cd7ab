"""What the ingest and query services share, in one base both subclass (neither imports the
other: `.importlinter`): the database pool and the lifespan that opens and closes it, the
API keys and the failed-authentication tracker, the tenant lookup with its cache and the
tenant id check, the read-model existence checks, and the app plumbing every service
installs (request metrics, JSON refusals, ``503 database_unavailable``, health routes).

Each service keeps its own specifics in its subclass (services/ingest/app.py,
services/query/service.py): the event log, its routes, its limits, and what an unknown
tenant answers there (:meth:`ServiceBase.unknown_tenant`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram

from services import tenants
from services.auth import ApiKeys
from services.database import add_unavailable_handler, connection_pool
from services.errors import ApiError, refuse_framework_errors
from services.expiring import Expiring
from services.health import add_health_routes
from services.observe import Observe
from services.ratelimit import FailedAuthentications
from services.settings import Settings
from streams import EventLog

__all__ = ["ServiceBase"]


class ServiceBase:
    """The database pool, API keys, tenants and read-model checks of an HTTP service."""

    def __init__(self, settings: Settings, *, pool_min_size: int) -> None:
        self.settings = settings
        self.pool = connection_pool(settings, min_size=pool_min_size)
        self.auth_failures = FailedAuthentications(
            settings.auth_failure_limit, settings.auth_failure_window_s
        )
        self.keys = ApiKeys(self.pool, settings, self.auth_failures)
        # Tenants are re-read at most every `cache_ttl_s` and outlive a database outage by
        # up to `cache_stale_s` (services/expiring.py); whether a read model exists is
        # re-checked every `cache_ttl_s` (a rebuild or a migration creates it).
        ttl, stale = settings.cache_ttl_s, settings.cache_stale_s
        self._tenants: Expiring[str, tenants.Tenant | None] = Expiring(ttl, stale_s=stale)
        self._read_models: Expiring[str, bool] = Expiring(ttl)

    # -- lifespan ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool (subclasses start what they need after it)."""
        await self.pool.open(wait=True, timeout=10)

    async def stop(self) -> None:
        """Close the pool (subclasses stop what they started before it)."""
        await self.pool.close()

    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        """The app's lifespan: :meth:`start` before the first request, :meth:`stop` after
        the last one."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def producer(self) -> EventLog | None:
        """The service's event log, for ``/health/ready`` (None: not started yet)."""
        return None

    # -- tenants and read models ------------------------------------------------------

    def unknown_tenant(self, tenant: str, *, well_formed: bool) -> ApiError:
        """What a request answers about a tenant that does not exist; ``well_formed`` is
        False for a string no tenant can have (not to be echoed back)."""
        raise NotImplementedError

    async def tenant(self, tenant: str) -> tenants.Tenant:
        """The tenant, cached (one query less per request), or :meth:`unknown_tenant`."""
        if not tenants.TENANT_PATTERN.fullmatch(tenant):
            # Not a name a tenant can have (and a NUL byte would not even reach the
            # database as text): unknown, without a query.
            raise self.unknown_tenant(tenant, well_formed=False)

        async def load() -> tenants.Tenant | None:
            async with self.pool.connection() as conn:
                return await tenants.get_tenant(conn, tenant)

        found = await self._tenants.get(tenant, load)
        if found is None:
            raise self.unknown_tenant(tenant, well_formed=True)
        return found

    async def read_model_exists(
        self, view: str, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> bool:
        """Whether a read model's view (e.g. ``memories.memories``) exists yet, checked at
        most every few seconds; on ``conn`` when given, else on a connection of the pool."""

        async def load() -> bool:
            if conn is not None:
                return await _exists(conn, view)
            async with self.pool.connection() as pooled:
                return await _exists(pooled, view)

        return await self._read_models.get(view, load)

    # -- the app ----------------------------------------------------------------------

    def install(
        self, app: FastAPI, *, requests: Counter, seconds: Histogram, rejected: Counter
    ) -> None:
        """What every service's app has before its routes: ``app.state.service``, request
        metrics, refusals (:class:`ApiError`, the framework's own, an unavailable database)
        answered as JSON errors and counted in ``rejected{route, code}``, and each 401
        counted against its client (services/ratelimit.py)."""
        app.state.service = self
        app.add_middleware(Observe, requests=requests, seconds=seconds)

        @app.exception_handler(ApiError)
        async def refused(request: Request, exc: ApiError) -> JSONResponse:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            rejected.labels(route, exc.code).inc()
            if exc.status == 401:  # wherever it was raised (services/ratelimit.py)
                self.auth_failures.failed(request)
            self.refused(request, exc, route)
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

        add_unavailable_handler(app, rejected)
        refuse_framework_errors(app, ApiError)

    def refused(self, request: Request, exc: ApiError, route: str) -> None:
        """Called for each refused request, after it is counted (e.g. to log it)."""

    def add_health_routes(self, app: FastAPI, *, live_status: str) -> None:
        """``/health/live`` (answering ``live_status``), ``/health/ready`` over the pool
        and :meth:`producer`, and ``/metrics`` (services/health.py)."""
        add_health_routes(app, self.settings, self.pool, self.producer, live_status=live_status)


async def _exists(conn: psycopg.AsyncConnection[Any], view: str) -> bool:
    cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [view])
    row = await cursor.fetchone()
    return bool(row and row[0])
