"""Readiness of a service: can it reach the database and the log, and how far behind
the log is each read model (reported, not failed on: a lagging projection still serves
what it has, and read-your-writes waits for what a client needs)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from aiokafka.errors import KafkaError
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool

from projections import PROJECTIONS
from services.expiring import Expiring
from services.settings import Settings
from streams import EventLog, versions
from streams.exceptions import BrokerUnavailable
from streams.offsets import log_extent
from streams.topics import Topics

__all__ = ["Readiness", "add_health_routes"]

logger = logging.getLogger(__name__)

# Lag is computed from the broker's end offsets: at most once per this many seconds.
_LAG_TTL_S = 5.0


class Readiness:
    """``GET /health/ready`` of a service: checks, and the lag of every live projection."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool[Any]) -> None:
        self.settings = settings
        self.pool = pool
        self._lag: Expiring[str, dict[str, int] | str] = Expiring(_LAG_TTL_S, max_keys=1)

    async def check(self, log: EventLog | None) -> tuple[bool, dict[str, Any]]:
        """(ready, body): ready when the database answers and the log producer is up."""
        checks: dict[str, str] = {}
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            checks["database"] = "ok"
        except (psycopg.Error, TimeoutError) as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if log is not None:
            checks["log"] = "ok" if log.started else "unavailable"
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
        if ok:
            body["lag"] = await self._lag.get("lag", self._projection_lag)
        return ok, body

    async def _projection_lag(self) -> dict[str, int] | str:
        """Events in the log not yet applied, per live projection."""
        topics = Topics(self.settings.topic_prefix)
        try:
            extent = await log_extent(self.settings, [topics.name(t) for t in _consumed()])
        except (KafkaError, BrokerUnavailable, OSError) as exc:
            return f"unknown: {type(exc).__name__}"
        async with self.pool.connection() as conn:
            done = await versions.live_checkpoints(conn)
        lag: dict[str, int] = {}
        for name, projection in PROJECTIONS.items():
            if name not in done:
                continue
            consumed = {topics.name(t) for t in projection.topics}
            lag[name] = sum(
                max(0, end - done[name].get(tp, start))
                for tp, (start, end) in extent.items()
                if tp[0] in consumed
            )
        return lag


def _consumed() -> set[str]:
    return {topic for projection in PROJECTIONS.values() for topic in projection.topics}


def add_health_routes(
    app: FastAPI,
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    log: Callable[[], EventLog | None],
    *,
    live_status: str,
) -> None:
    """``/health/live``, ``/health/ready`` (:class:`Readiness` over ``log()``, the service's
    producer when it has one) and Prometheus ``/metrics``, as every service serves them."""
    readiness = Readiness(settings, pool)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": live_status}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        ok, body = await readiness.check(log())
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
