"""The ingest service: webhooks and the generic events API, into the log.

Every request follows one path, and the order is the point:

1. read the raw body, refusing more than ``MEMSTREAM_MAX_BODY_BYTES`` (413);
2. find the tenant (404) and check the credentials over the *raw* bytes (401);
3. parse the JSON (400) and normalise it into memstream events (422 with a field path);
4. append the events and wait for the broker's acknowledgement (503 if it does not come);
5. answer 200 with the event ids and their log positions.

A refusal at any step appends nothing, answers a JSON error body
``{"error": {"code", "message", "path"?}}`` and counts in
``memstream_ingest_rejected_total``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool

from schemas import Event, EventDecodeError, InvalidEvent, decode_event
from services import tenants
from services.ingest.errors import IngestError
from services.ingest.metrics import DEDUPE_HITS, REJECTED, REQUEST_SECONDS, REQUESTS
from streams import BrokerUnavailable, EventLog, LogPosition, Settings

logger = logging.getLogger(__name__)

_SECRETS_TTL_S = 5.0
_RECENT_IDS = 100_000


class IngestService:
    """What the routes share: the database pool, the event log, caches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = AsyncConnectionPool(
            settings.require_database(),
            min_size=1,
            max_size=10,
            open=False,
            kwargs={"autocommit": True},
        )
        self.log = EventLog(settings)
        self._credentials: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._recent: OrderedDict[Any, None] = OrderedDict()

    async def start(self) -> None:
        await self.pool.open(wait=True, timeout=10)
        await self.log.start()

    async def stop(self) -> None:
        await self.log.stop()
        await self.pool.close()

    # -- steps ------------------------------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise IngestError(413, "body_too_large", f"the body is over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise IngestError(413, "body_too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def tenant(self, tenant: str) -> tenants.Tenant:
        async with self.pool.connection() as conn:
            found = await tenants.get_tenant(conn, tenant)
        if found is None:
            raise IngestError(404, "unknown_tenant", f"no tenant {tenant!r}")
        return found

    async def secrets(self, tenant: str, platform: str) -> list[str]:
        """Active webhook secrets, cached a few seconds (rotation takes effect within that)."""
        key = (tenant, platform)
        cached = self._credentials.get(key)
        if cached is not None and time.monotonic() - cached[0] < _SECRETS_TTL_S:
            return cached[1]
        async with self.pool.connection() as conn:
            found = await tenants.active_webhook_secrets(conn, tenant, platform)
        self._credentials[key] = (time.monotonic(), found)
        return found

    async def api_key_tenant(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise IngestError(401, "missing_credentials", "send Authorization: Bearer <api key>")
        async with self.pool.connection() as conn:
            key = await tenants.authenticate_api_key(conn, token.strip())
        if key is None:
            raise IngestError(401, "bad_credentials", "the API key is unknown or revoked")
        return key.tenant

    async def append(
        self, events: Sequence[Event], platform: str
    ) -> tuple[list[LogPosition | None], int]:
        """Append events not appended by this process before; return positions and hits.

        A redelivered webhook yields the same event ids: when this process has already
        had them acknowledged, they are durably in the log and are not appended again
        (another process would append them; projections dedupe by id).
        """
        fresh = [e for e in events if e.id not in self._recent]
        hits = len(events) - len(fresh)
        if hits:
            DEDUPE_HITS.labels(platform).inc(hits)
        try:
            positions = await self.log.append_many(fresh) if fresh else []
        except BrokerUnavailable as exc:
            logger.error("append failed: %s", exc)
            raise IngestError(
                503, "log_unavailable", "the event log is unavailable; retry later"
            ) from exc
        for event in fresh:
            self._recent[event.id] = None
        while len(self._recent) > _RECENT_IDS:
            self._recent.popitem(last=False)
        by_id = dict(zip((e.id for e in fresh), positions, strict=True))
        return [by_id.get(e.id) for e in events], hits


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def accepted(
    events: Sequence[Event], positions: Sequence[LogPosition | None], hits: int
) -> dict[str, Any]:
    return {
        "status": "accepted",
        "events": [
            {"id": str(e.id), "type": e.type, "position": p.token() if p else None}
            for e, p in zip(events, positions, strict=True)
        ],
        "duplicates": hits,
    }


def create_app(settings: Settings) -> FastAPI:
    """The ingest ASGI app (started by `memstream run`, or any ASGI server)."""
    service = IngestService(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="memstream ingest",
        version="1",
        lifespan=lifespan,
        description="Voice-platform webhooks and memstream events, appended to the log.",
    )
    app.state.service = service

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        REQUESTS.labels(path, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(path).observe(time.perf_counter() - began)
        return response

    @app.exception_handler(IngestError)
    async def refused(request: Request, exc: IngestError) -> JSONResponse:
        route = request.scope.get("route")
        REJECTED.labels(getattr(route, "path", "unmatched"), exc.code).inc()
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.post("/v1/events")
    async def post_events(request: Request) -> JSONResponse:
        """Append memstream events (one object, a list, or {"events": [...]})."""
        tenant = await service.api_key_tenant(request)
        document = parse_json(await service.read_body(request))
        items = (
            document.get("events")
            if isinstance(document, dict) and "events" in document
            else document
        )
        items = items if isinstance(items, list) else [items]
        if not items:
            raise IngestError(422, "no_events", "no events in the body", path="events")
        events: list[Event] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise IngestError(
                    422, "invalid_event", "an event is a JSON object", path=f"events[{index}]"
                )
            try:
                event = decode_event(item)
            except InvalidEvent as exc:
                first = exc.errors[0] if exc.errors else None
                where = ".".join(str(p) for p in first["loc"]) if first else ""
                raise IngestError(
                    422, exc.code, exc.message, path=f"events[{index}].{where}".rstrip(".")
                ) from None
            except EventDecodeError as exc:
                raise IngestError(422, exc.code, exc.message, path=f"events[{index}]") from None
            if event.tenant != tenant:
                raise IngestError(
                    403,
                    "tenant_mismatch",
                    "an API key writes only its own tenant's events",
                    path=f"events[{index}].tenant",
                )
            events.append(event)
        positions, hits = await service.append(events, "api")
        return JSONResponse(accepted(events, positions, hits))

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            async with service.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            checks["database"] = "ok"
        except (psycopg.Error, TimeoutError) as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["log"] = "ok" if service.log.started else "unavailable"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)  # fmt: skip

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    return app
