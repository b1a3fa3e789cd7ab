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

1. refuse a client that failed authentication too often lately (429), read the raw
   body, refusing more than ``MEMSTREAM_MAX_BODY_BYTES`` (413);
2. find the tenant (404), check the credentials over the *raw* bytes (401), then take
   one of the tenant's requests from its rate limit (429);
3. parse the JSON (400) and normalise it into memstream events (422 with a field path);
4. append the events and wait for the broker's acknowledgement (503 if it does not come);
5. answer 200: the event ids and log positions, or the reply the platform expects.

Call-start webhooks (ElevenLabs initiation, Vapi assistant-request) differ at 4-5: the
phone is ringing, so the briefing is answered even if the append fails or is slow (the
failure is logged and counted; the answer holds no position). A database outage answers
503 ``database_unavailable`` with ``Retry-After``, unless the tenant and its secrets are
still cached (services/expiring.py).

A refusal at any step appends nothing, answers a JSON error body
``{"error": {"code", "message", "path"?}}`` and counts in
``memstream_ingest_rejected_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from schemas import Event, EventDecodeError, InvalidEvent, decode_event, utc_now
from services import tenants
from services.bodies import read_body
from services.briefing import Briefing, load_briefing
from services.errors import ApiError
from services.expiring import Expiring
from services.ingest import describe
from services.ingest.errors import IngestError
from services.ingest.metrics import (
    BRIEFING_FAILURES,
    DEDUPE_HITS,
    ERASED_DROPPED,
    INITIATION_APPEND_FAILURES,
    RATE_LIMITED,
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
from services.ratelimit import RateLimiter
from services.service_base import ServiceBase
from services.settings import Settings
from streams import BrokerUnavailable, EventLog, LogPosition, RecordTooLarge
from streams.audit import ERASURE, AuditTrail
from streams.exceptions import AuditUnavailable

logger = logging.getLogger(__name__)

_RECENT_IDS = 100_000
#: What ``/v1/events`` appends, and the scopes (besides admin) that may: the facts a
#: client can know. What the processors derive (memory.extracted, embedding.computed,
#: summary.generated, ...) is not here: no key may append it, or a client could write
#: memories, vectors or summaries no conversation produced (docs/security.md).
APPENDABLE: dict[str, tuple[str, ...]] = {
    "conversation.started": ("ingest",),
    "conversation.ended": ("ingest",),
    "conversation.failed": ("ingest",),
    "turn.said": ("ingest",),
    "call.signalled": ("ingest",),
    "memory.asserted": ("write",),
    "memory.retracted": ("write",),
    "user.forgotten": ("admin",),
}

# ElevenLabs and Vapi wait for the briefing while the caller hears the phone ring.
_BRIEFING_TIMEOUT_S = 1.0
# ... and for the acknowledgement of the call's first event at most this long after the
# webhook was verified (Vapi gives up on an assistant-request after 7.5 s; the append
# itself may take up to its 10 s timeout when the broker is gone).
_RINGING_ACK_WAIT_S = 2.0


class IngestService(ServiceBase):
    """What the routes share: the database pool, the event log, caches (the pool, API keys,
    tenants and read-model checks: services/service_base.py)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, pool_min_size=1)
        self.log = EventLog(settings)
        # Erasures through /v1/events are recorded in the audit trail (streams/audit.py).
        self.audit = AuditTrail.from_settings(settings, self.log)
        # Secrets, like tenants, are re-read at most every `cache_ttl_s` (a new or revoked
        # secret takes effect within it) and outlive a database outage by up to
        # `cache_stale_s`: a webhook is still verified and appended while it lasts.
        ttl, stale = settings.cache_ttl_s, settings.cache_stale_s
        self._secrets: Expiring[tuple[str, str], list[str]] = Expiring(ttl, stale_s=stale)
        self.limiter = RateLimiter(
            settings.ingest_rate_limit,
            settings.ingest_rate_burst,
            per="tenant",
            refused=RATE_LIMITED,
        )
        # (tenant, event id) of the events this process had acknowledged: an id alone would
        # drop a tenant's event whose id another tenant's event has (ids from before the
        # tenant was part of them, ids a client chose).
        self._recent: OrderedDict[tuple[str, uuid.UUID], None] = OrderedDict()
        # The same keys while their append is in progress: a copy of the webhook arriving
        # meanwhile (a platform retrying, or delivering twice at once) waits for it
        # instead of appending the event a second time.
        self._appending: dict[tuple[str, uuid.UUID], asyncio.Event] = {}
        # Appends of call-start events still waiting for the broker after their call was
        # answered (see `while_ringing` in `create_app`).
        self.ringing: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        await super().start()
        await self.log.start()
        await self.audit.start()

    async def stop(self) -> None:
        if self.ringing:  # each ends within the append timeout
            await asyncio.wait(self.ringing)
        await self.audit.close()  # what the requests recorded, appended before the log stops
        await self.log.stop()
        await super().stop()

    def producer(self) -> EventLog:
        return self.log

    def unknown_tenant(self, tenant: str, *, well_formed: bool) -> ApiError:
        return IngestError(
            404, "unknown_tenant", f"no tenant {tenant!r}" if well_formed else "no such tenant"
        )

    def refused(self, request: Request, exc: ApiError, route: str) -> None:
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

    # -- steps ------------------------------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        """The body as sent, up to ``MEMSTREAM_MAX_BODY_BYTES`` (services/bodies.py): a
        refusal appends nothing."""
        return await read_body(request, self.settings.max_body_bytes, IngestError)

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

    def admit(self, tenant: str) -> None:
        """Spend one of the tenant's requests (429 with ``Retry-After`` over its rate)."""
        self.limiter.spend(tenant)

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
                        with_memories=await self.read_model_exists("memories.memories", conn),
                        with_profile=await self.read_model_exists("summaries.profiles", conn),
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

    async def api_key(self, request: Request) -> tenants.ApiKey:
        """The request's API key (401 without a valid one, 403 when it may not append)."""
        key = await self.keys.of(request)
        self.admit(key.tenant)
        if not key.allows(*{scope for scopes in APPENDABLE.values() for scope in scopes}):
            raise IngestError(
                403,
                "insufficient_scope",
                f"this key may {', '.join(key.scopes)}; appending events needs ingest, write"
                " or admin (memstream keys create --scope ...)",
            )
        return key

    async def append(
        self, events: Sequence[Event], platform: str
    ) -> tuple[list[LogPosition | None], int]:
        """Append events not appended by this process before; return positions and hits.

        A redelivered webhook yields the same event ids: when this process has already
        had them acknowledged for the same tenant, they are durably in the log and are
        not appended again (another process would append them; projections dedupe by
        tenant and id). A copy that arrives while they are being appended waits for that
        append: then it is a duplicate, or, if the append failed, it appends them itself.

        Nor is an event about a call that began at or before its user's erasure (an old
        webhook redelivered after the user was forgotten): the log refuses it
        (``EventLog.append_many``). It is acknowledged like a duplicate (no position),
        logged and counted (docs/ingest.md, "Forgotten users").
        """
        while waits := {
            self._appending[key]
            for key in ((e.tenant, e.id) for e in events)
            if key in self._appending
        }:
            # Checked again after each wait: an append that failed left its events to
            # whichever request comes next.
            await asyncio.gather(*(done.wait() for done in waits))
        fresh = [e for e in events if (e.tenant, e.id) not in self._recent]
        hits = len(events) - len(fresh)
        if hits:
            DEDUPE_HITS.labels(platform).inc(hits)
        appending = {(e.tenant, e.id): asyncio.Event() for e in fresh}
        self._appending.update(appending)
        try:
            positions = await self._append_fresh(fresh)
        finally:
            for key, done in appending.items():
                del self._appending[key]
                done.set()
        late = [e for e, position in zip(fresh, positions, strict=True) if position is None]
        if late:
            ERASED_DROPPED.labels(platform).inc(len(late))
            logger.info(
                "events of a forgotten user not appended: their call began before the erasure",
                extra={**call_fields(late), "events": len(late)},
            )
        by_id = dict(zip((e.id for e in fresh), positions, strict=True))
        return [by_id.get(e.id) for e in events], hits

    async def _append_fresh(self, fresh: Sequence[Event]) -> list[LogPosition | None]:
        """Append ``fresh`` and remember the ids appended (before anyone waiting on them
        is woken), or raise the IngestError that refuses the request."""
        try:
            positions = await self.log.append_many(fresh) if fresh else []
        except (orjson.JSONEncodeError, PydanticSerializationError) as exc:
            # Valid by the schema but not representable on the wire (an integer beyond
            # 64 bits, or a value nested too deep, in platform metadata); records are
            # encoded before anything is sent, so nothing was appended.
            raise IngestError(
                422, "unencodable_value", f"the payload holds a value that cannot be stored: {exc}"
            ) from None
        except RecordTooLarge as exc:
            # Not retryable: the same event is as large next time.
            raise IngestError(
                413, "event_too_large", f"an event is too large for the log: {exc}"
            ) from None
        except BrokerUnavailable as exc:
            logger.error("append failed: %s", exc, extra=call_fields(fresh))
            raise IngestError(
                503, "log_unavailable", "the event log is unavailable; retry later"
            ) from exc
        for event, position in zip(fresh, positions, strict=True):
            if position is not None:
                self._recent[(event.tenant, event.id)] = None
        while len(self._recent) > _RECENT_IDS:
            self._recent.popitem(last=False)
        return positions


class Parse(Protocol):
    """A platform adapter's parse function (see services.ingest.platforms)."""

    def __call__(
        self,
        tenant: str,
        body: dict[str, Any],
        *,
        received_at: datetime,
        default_region: str | None = None,
        legacy_ids_before: datetime | None = None,
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
    ringing = service.ringing

    app = FastAPI(
        title="memstream ingest",
        version="1",
        lifespan=service.lifespan,
        description="Voice-platform webhooks and memstream events, appended to the log.",
    )
    service.install(app, requests=REQUESTS, seconds=REQUEST_SECONDS, rejected=REJECTED)
    describe.install(app)

    @app.post("/v1/events")
    async def post_events(request: Request) -> JSONResponse:
        """Append memstream events (one object, a list, or {"events": [...]})."""
        key = await service.api_key(request)
        tenant = key.tenant
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
            scopes = APPENDABLE.get(event.type)
            if scopes is None:
                raise IngestError(
                    403,
                    "derived_event_type",
                    f"{event.type} is appended by memstream's processors, never through the API",
                    path=f"events[{index}].type",
                )
            if not key.allows(*scopes):
                raise IngestError(
                    403,
                    "insufficient_scope",
                    f"appending {event.type} needs a key with {' or '.join(scopes)}",
                    path=f"events[{index}].type",
                )
            events.append(event)
        positions, hits = await service.append(events, "api")
        for erasure in (e for e in events if e.type == "user.forgotten"):
            try:
                await service.audit.record(
                    ERASURE, tenant, erasure.subject, key_id=key.key_id, route="POST /v1/events"
                )
            except AuditUnavailable as exc:
                # Appended but not recorded (not an IngestError: something was appended);
                # the client retries, and an erasure is idempotent.
                raise ApiError(
                    503, "audit_unavailable", "the erasure was not recorded; retry later"
                ) from exc
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

    def append_ended(
        webhook: NormalisedWebhook, tenant: str, platform: str, task: asyncio.Task[Any]
    ) -> None:
        """The end of a call-start append (`while_ringing`): a failure is logged and counted."""
        ringing.discard(task)
        if task.cancelled():
            error: BaseException | None = None
            code = "cancelled"
        else:
            error = task.exception()
            if error is None:
                return  # `deliver` logged "webhook accepted"
            code = error.code if isinstance(error, ApiError) else type(error).__name__
        INITIATION_APPEND_FAILURES.labels(platform, code).inc()
        logger.error(
            "call-start events not acknowledged by the log (%s), so not known to be appended;"
            " the call was answered with its briefing",
            code,
            exc_info=None if isinstance(error, ApiError) else error,
            extra={
                **call_fields(
                    webhook.events,
                    tenant=tenant,
                    subject=webhook.subject,
                    conversation_id=webhook.conversation_id,
                ),
                "kind": webhook.kind,
                "events": len(webhook.events),
                "appended": False,
                "code": code,
            },
        )

    async def while_ringing(webhook: NormalisedWebhook, tenant: str, platform: str) -> Briefing:
        """The briefing of a ringing call, its events appended meanwhile.

        The caller hears the ring tone until this answers, and the platform does not
        retry a call-start webhook: the briefing (empty if the read models cannot give
        it) is answered even when the append fails or is slow. The answer carries no log
        position, so it claims nothing about the append. The append is waited for up to
        `_RINGING_ACK_WAIT_S`, then left to finish in the background; a failure is logged
        ("not acknowledged ... not known to be appended", ``"appended": false``) and
        counted in memstream_ingest_initiation_append_failures_total.
        """
        deadline = asyncio.get_running_loop().time() + _RINGING_ACK_WAIT_S
        append = asyncio.create_task(deliver(webhook, tenant, platform))
        ringing.add(append)
        append.add_done_callback(lambda task: append_ended(webhook, tenant, platform, task))
        briefing = await service.briefing(tenant, webhook.subject, webhook.conversation_id)
        await asyncio.wait([append], timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        return briefing

    async def receive(
        request: Request,
        tenant: str,
        secret_platform: str,
        verify: Verify,
        parse: Parse,
    ) -> NormalisedWebhook:
        """Steps 1-3 of every webhook: body, tenant, credentials, rate, JSON, events."""
        service.auth_failures.check(request)
        body = await service.read_body(request)
        found = await service.tenant(tenant)
        await service.authenticate(
            tenant, secret_platform, lambda keys: verify(request.headers, body, keys)
        )
        service.admit(tenant)
        document = parse_json(body)
        try:
            return parse(
                tenant,
                document,
                received_at=utc_now(),
                default_region=found.default_region,
                legacy_ids_before=found.legacy_ids_before,
            )
        except PayloadError as exc:
            raise IngestError(422, exc.code, exc.message, path=exc.path) from None
        except ValidationError as exc:
            # The adapters read what they keep through platforms/payload.py, which refuses
            # what the event schemas refuse, naming the body's field. A body that still makes
            # an invalid event is refused all the same (never a 500), and logged: a check
            # payload.py lacks. The path is the event's, not the body's.
            error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
            where = ".".join(str(part) for part in error["loc"])
            logger.warning(
                "webhook body makes an invalid event: %s: %s",
                where,
                error["msg"],
                extra=call_fields(tenant=tenant),
            )
            raise IngestError(
                422,
                PayloadError.code,
                f"the body makes an event memstream cannot store: {where}: {error['msg']}",
            ) from None

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
        briefing = await while_ringing(webhook, tenant, "elevenlabs")
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
        briefing = await while_ringing(webhook, tenant, "vapi")
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

    service.add_health_routes(app, live_status="ok")

    return app
