"""The ingest service: webhooks and the generic events API, into the log.

Routes (``{tenant}`` is the memstream tenant the platform is configured for):

- ``POST /v1/webhooks/{tenant}/elevenlabs`` — ElevenLabs post-call webhooks (HMAC);
- ``POST /v1/webhooks/{tenant}/elevenlabs/initiation`` — ElevenLabs'
  conversation-initiation webhook (bearer token): answers with the caller's briefing;
- ``POST /v1/webhooks/{tenant}/vapi`` — Vapi's server URL (secret, bearer or HMAC);
  ``assistant-request`` is answered with the briefing for ``?assistant_id=``;
- ``POST /v1/webhooks/{tenant}/retell`` — Retell webhooks (HMAC keyed with the API key);
- ``POST /v1/events`` — memstream events from any producer (tenant API key).

Every request follows one path, and the order is the point:

1. read the raw body, refusing more than ``MEMSTREAM_MAX_BODY_BYTES`` (413);
2. find the tenant (404) and check the credentials over the *raw* bytes (401);
3. parse the JSON (400) and normalise it into memstream events (422 with a field path);
4. append the events and wait for the broker's acknowledgement (503 if it does not come);
5. answer 200: the event ids and log positions, or the reply the platform expects.

A refusal at any step appends nothing, answers a JSON error body
``{"error": {"code", "message", "path"?}}`` and counts in
``memstream_ingest_rejected_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from schemas import Event, EventDecodeError, InvalidEvent, decode_event, utc_now
from services import tenants
from services.briefing import Briefing, load_briefing
from services.expiring import Expiring
from services.health import add_health_routes
from services.ingest.errors import IngestError
from services.ingest.metrics import (
    BRIEFING_FAILURES,
    DEDUPE_HITS,
    REJECTED,
    REQUEST_SECONDS,
    REQUESTS,
    SIGNATURE_FAILURES,
)
from services.ingest.platforms import NormalisedWebhook, PayloadError, elevenlabs, retell, vapi
from services.ingest.signatures import (
    SignatureError,
    verify_bearer,
    verify_elevenlabs,
    verify_retell,
    verify_vapi,
)
from services.logs import call_fields
from services.observe import Observe
from streams import BrokerUnavailable, EventLog, LogPosition, Settings

logger = logging.getLogger(__name__)

# Tenants, secrets and whether a read model exists are re-read at most this often:
# a new or revoked secret takes effect within it.
_CACHE_TTL_S = 5.0
_RECENT_IDS = 100_000
# ElevenLabs and Vapi wait for the briefing while the caller hears the phone ring.
_BRIEFING_TIMEOUT_S = 1.0


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
        self._secrets: Expiring[tuple[str, str], list[str]] = Expiring(_CACHE_TTL_S)
        self._tenants: Expiring[str, tenants.Tenant | None] = Expiring(_CACHE_TTL_S)
        self._read_models: Expiring[str, bool] = Expiring(_CACHE_TTL_S)
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
        """The tenant, cached a few seconds like the secrets (a webhook is one query less)."""
        if not tenants.TENANT_PATTERN.fullmatch(tenant):
            # Not a name a tenant can have (and a NUL byte would not even reach the
            # database as text): unknown, without a query.
            raise IngestError(404, "unknown_tenant", "no such tenant")

        async def load() -> tenants.Tenant | None:
            async with self.pool.connection() as conn:
                return await tenants.get_tenant(conn, tenant)

        found = await self._tenants.get(tenant, load)
        if found is None:
            raise IngestError(404, "unknown_tenant", f"no tenant {tenant!r}")
        return found

    async def authenticate(
        self, tenant: str, platform: str, verify: Callable[[list[str]], None]
    ) -> None:
        """Run ``verify`` over the tenant's active secrets for ``platform`` (401 if it fails).

        ``platform`` is the secret's platform in ``memstream.webhook_secrets``.
        """
        secrets = await self.secrets(tenant, platform)
        if not secrets:
            SIGNATURE_FAILURES.labels(platform, "no_secret_configured").inc()
            raise IngestError(
                401,
                "no_secret_configured",
                f"tenant {tenant!r} has no active {platform} webhook secret"
                f" (memstream secrets add --tenant {tenant} --platform {platform})",
            )
        try:
            verify(secrets)
        except SignatureError as exc:
            SIGNATURE_FAILURES.labels(platform, exc.code).inc()
            raise IngestError(401, exc.code, exc.message) from None

    async def _read_model_exists(self, conn: psycopg.AsyncConnection[Any], view: str) -> bool:
        """Whether a read model's view (e.g. ``memories.memories``) exists yet (checked
        every few seconds): the briefing leaves out what is not built."""

        async def load() -> bool:
            cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [view])
            row = await cursor.fetchone()
            return bool(row and row[0])

        return await self._read_models.get(view, load)

    async def briefing(
        self, tenant: str, subject: str | None, conversation_id: str | None = None
    ) -> Briefing:
        """The caller's briefing; an empty one if the read models cannot give it in time.

        The phone is ringing: a call that starts without memories is better than a
        call that fails, so a database error or a slow read is logged and counted,
        never answered with an error.
        """
        if subject is None:
            return Briefing()
        try:
            async with asyncio.timeout(_BRIEFING_TIMEOUT_S):
                async with self.pool.connection() as conn:
                    return await load_briefing(
                        conn,
                        tenant,
                        subject,
                        with_memories=await self._read_model_exists(conn, "memories.memories"),
                        with_profile=await self._read_model_exists(conn, "summaries.profiles"),
                    )
        except (psycopg.Error, TimeoutError) as exc:
            BRIEFING_FAILURES.labels(type(exc).__name__).inc()
            logger.warning(
                "briefing unavailable, answering an empty one: %s",
                exc,
                extra=call_fields(tenant=tenant, subject=subject, conversation_id=conversation_id),
            )
            return Briefing()

    async def secrets(self, tenant: str, platform: str) -> list[str]:
        """Active webhook secrets, cached a few seconds (rotation takes effect within that)."""

        async def load() -> list[str]:
            async with self.pool.connection() as conn:
                return await tenants.active_webhook_secrets(conn, tenant, platform)

        return await self._secrets.get((tenant, platform), load)

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
        except orjson.JSONEncodeError as exc:
            # Valid by the schema but not representable on the wire (an integer beyond
            # 64 bits deep in platform metadata); records are encoded before anything
            # is sent, so nothing was appended.
            raise IngestError(
                422, "unencodable_value", f"the payload holds a value that cannot be stored: {exc}"
            ) from None
        except BrokerUnavailable as exc:
            logger.error("append failed: %s", exc, extra=call_fields(fresh))
            raise IngestError(
                503, "log_unavailable", "the event log is unavailable; retry later"
            ) from exc
        for event in fresh:
            self._recent[event.id] = None
        while len(self._recent) > _RECENT_IDS:
            self._recent.popitem(last=False)
        by_id = dict(zip((e.id for e in fresh), positions, strict=True))
        return [by_id.get(e.id) for e in events], hits


class Parse(Protocol):
    """A platform adapter's parse function (see services.ingest.platforms)."""

    def __call__(
        self,
        tenant: str,
        body: dict[str, Any],
        *,
        received_at: datetime,
        default_region: str | None = None,
    ) -> NormalisedWebhook: ...


#: Checks a request's credentials (headers, raw body, active secrets); raises SignatureError.
Verify = Callable[[Mapping[str, str], bytes, list[str]], None]


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

    app.add_middleware(Observe, requests=REQUESTS, seconds=REQUEST_SECONDS)

    @app.exception_handler(IngestError)
    async def refused(request: Request, exc: IngestError) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        REJECTED.labels(route, exc.code).inc()
        # The tenant of the URL, when it can be one: a refused request names no subject
        # or event yet (nothing was appended), and an arbitrary path is not logged.
        tenant = request.path_params.get("tenant")
        if tenant is not None and not tenants.TENANT_PATTERN.fullmatch(tenant):
            tenant = None
        logger.info(
            "request refused: %s",
            exc.code,
            extra={
                **call_fields(tenant=tenant),
                "route": route,
                "status": exc.status,
                "code": exc.code,
            },
        )
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
        logger.info(
            "events accepted",
            extra={**call_fields(events), "events": len(events), "duplicates": hits},
        )
        return JSONResponse(accepted(events, positions, hits))

    async def deliver(webhook: NormalisedWebhook, tenant: str, platform: str) -> dict[str, Any]:
        """Append a normalised webhook's events; the 200 body that acknowledges it."""
        positions, hits = await service.append(webhook.events, platform)
        logger.info(
            "webhook accepted",
            extra={
                # The platform's own call id even when the webhook produced no event.
                **call_fields(
                    webhook.events,
                    tenant=tenant,
                    subject=webhook.subject,
                    conversation_id=webhook.conversation_id,
                ),
                "kind": webhook.kind,
                "events": len(webhook.events),
                "duplicates": hits,
            },
        )
        return {"kind": webhook.kind, **accepted(webhook.events, positions, hits)}

    async def receive(
        request: Request,
        tenant: str,
        secret_platform: str,
        verify: Verify,
        parse: Parse,
    ) -> NormalisedWebhook:
        """Steps 1-3 of every webhook: body, tenant, credentials, JSON, normalised events."""
        body = await service.read_body(request)
        found = await service.tenant(tenant)
        await service.authenticate(
            tenant, secret_platform, lambda keys: verify(request.headers, body, keys)
        )
        document = parse_json(body)
        try:
            return parse(
                tenant, document, received_at=utc_now(), default_region=found.default_region
            )
        except PayloadError as exc:
            raise IngestError(422, exc.code, exc.message, path=exc.path) from None

    @app.post("/v1/webhooks/{tenant}/elevenlabs")
    async def elevenlabs_post_call(tenant: str, request: Request) -> JSONResponse:
        """ElevenLabs post-call webhooks: transcription, audio (not kept), initiation failure."""
        webhook = await receive(
            request,
            tenant,
            "elevenlabs",
            lambda headers, body, keys: verify_elevenlabs(headers, body, keys, now=time.time()),
            elevenlabs.parse_post_call,
        )
        return JSONResponse(await deliver(webhook, tenant, "elevenlabs"))

    @app.post("/v1/webhooks/{tenant}/elevenlabs/initiation")
    async def elevenlabs_initiation(
        tenant: str, request: Request, first_message: bool = False
    ) -> JSONResponse:
        """An inbound call is ringing: append conversation.started, answer the briefing.

        ``?first_message=true`` also overrides the agent's first message for a
        returning caller whose name is known (the agent must allow that override
        in its ElevenLabs security settings, or ElevenLabs refuses the call).
        """
        webhook = await receive(
            request,
            tenant,
            "elevenlabs-init",
            lambda headers, _body, keys: verify_bearer(headers, keys),
            elevenlabs.parse_initiation,
        )
        # The phone is ringing: read the briefing while the broker acknowledges.
        briefing, _ = await asyncio.gather(
            service.briefing(tenant, webhook.subject, webhook.conversation_id),
            deliver(webhook, tenant, "elevenlabs"),
        )
        reply: dict[str, Any] = {
            "type": "conversation_initiation_client_data",
            "dynamic_variables": briefing.variables(),
        }
        greeting = briefing.greeting() if first_message else None
        if greeting is not None:
            reply["conversation_config_override"] = {"agent": {"first_message": greeting}}
        return JSONResponse(reply)

    @app.post("/v1/webhooks/{tenant}/vapi")
    async def vapi_server_message(
        tenant: str, request: Request, assistant_id: str | None = None
    ) -> JSONResponse:
        """Vapi's server URL: every message type, dispatched on ``message.type``.

        ``assistant-request`` is answered with ``assistant_id`` (a query parameter of
        the server URL configured in Vapi) and the caller's briefing as
        ``assistantOverrides.variableValues``.
        """
        webhook = await receive(
            request,
            tenant,
            "vapi",
            lambda headers, body, keys: verify_vapi(headers, body, secrets=keys, now=time.time()),
            vapi.parse_server_message,
        )
        if webhook.kind != "vapi.assistant-request":
            return JSONResponse(await deliver(webhook, tenant, "vapi"))
        if not assistant_id:
            raise IngestError(
                422,
                "assistant_not_configured",
                "answering assistant-request needs the assistant: add ?assistant_id=<id>"
                " to the server URL",
                path="assistant_id",
            )
        briefing, _ = await asyncio.gather(
            service.briefing(tenant, webhook.subject, webhook.conversation_id),
            deliver(webhook, tenant, "vapi"),
        )
        return JSONResponse(
            {
                "assistantId": assistant_id,
                "assistantOverrides": {"variableValues": briefing.variables()},
            }
        )

    @app.post("/v1/webhooks/{tenant}/retell")
    async def retell_webhook(tenant: str, request: Request) -> JSONResponse:
        """Retell webhooks: call_ended and call_analyzed become conversation.ended."""
        webhook = await receive(
            request,
            tenant,
            "retell",
            lambda headers, body, keys: verify_retell(
                headers, body, api_keys=keys, now=time.time()
            ),
            retell.parse_webhook,
        )
        return JSONResponse(await deliver(webhook, tenant, "retell"))

    add_health_routes(app, settings, service.pool, lambda: service.log, live_status="ok")

    return app
