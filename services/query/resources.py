"""The query service's resources: users, their memories and conversations; asserting and
retracting a memory.

- ``GET /v1/users`` — the tenant's users, paginated;
- ``GET /v1/users/{user}`` — one user;
- ``GET /v1/users/{user}/memories`` — paginated, newest first, ``?sector=`` and
  ``?state=active|superseded|retracted|all`` (default active);
- ``POST /v1/users/{user}/memories`` — appends ``memory.asserted`` (201, with its log
  position for read-your-writes); an ``Idempotency-Key`` header makes a retry append the
  same event (same ids) instead of a second memory;
- ``DELETE /v1/users/{user}/memories/{memory_id}`` — appends ``memory.retracted`` (202);
- ``GET /v1/users/{user}/conversations`` — paginated, newest first;
- ``GET /v1/conversations/{conversation_id}`` — with its transcript;
- ``DELETE /v1/users/{user}`` (admin) — erasure: destroys the user's key and appends
  ``user.forgotten``; 200 once every read model has purged the user, 202 with the position
  to wait on (``X-Memstream-After``) if they have not within the wait;
- ``GET /v1/users/{user}/export`` (admin) — everything held about the user, streamed as
  one JSON document (services/personal_data.py).

Pages are keyset pages: ``next_cursor`` (opaque) is passed back as ``?cursor=``; it is
null on the last page.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from projections.conversations import queries
from projections.memories import get_memory
from projections.memories.queries import memories_page
from schemas import MemoryAsserted, MemoryRetracted, Source, derived_event_id, utc_now
from services import personal_data
from services.errors import ApiError
from services.query.consistency import parse_wait_ms
from services.query.requests import (
    User,
    documented_body,
    first_error,
    read_json,
    subject_of,
    validated,
)
from services.query.search import SECTORS
from services.query.serialise import (
    conversation_json,
    iso,
    listed_user_json,
    memory_json,
    user_json,
)
from services.query.service import QueryService
from streams import BrokerUnavailable
from streams.audit import ERASURE

__all__ = ["AssertRequest", "add_resource_routes"]

Sector = Literal["semantic", "episodic", "procedural", "emotional", "reflective"]
_STATES = ("active", "superseded", "retracted", "all")
_MAX_PAGE = 200
USER: TypeAdapter[str] = TypeAdapter(User)


#: PostgreSQL text cannot hold a NUL character, nor can an event (schemas.envelope.Event):
#: refused here, a 422, rather than failing when the event is made.
_NO_NUL = r"^[^\x00]*$"


class AssertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    content: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=_NO_NUL),
    ]
    sector: Sector = "semantic"
    salience: float = Field(default=0.5, ge=0.0, le=1.0)
    asserted_by: Annotated[str, StringConstraints(max_length=200, pattern=_NO_NUL)] | None = None


def _reason(request: Request) -> str | None:
    """A retraction's or an erasure's ``?reason=``: appended (sealed) with its event, so
    at most 500 printable characters (422 otherwise)."""
    reason = request.query_params.get("reason")
    if reason is not None and not (len(reason) <= 500 and reason.isprintable()):
        raise ApiError(422, "invalid_request", "reason is up to 500 printable characters",
                       path="reason")  # fmt: skip
    return reason


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(raw: str | None, *kinds: Callable[[Any], Any]) -> list[Any] | None:
    """The values of a cursor, each read by its kind (``_text``, ``_instant``, ``_uuid``).

    A cursor is client input: decoded values of another type than the API put there
    would reach the query as parameters it cannot compare (a database error), so they
    are refused like a cursor that is not JSON.
    """
    if raw is None:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if isinstance(values, list) and len(values) == len(kinds):
            return [kind(value) for kind, value in zip(kinds, values, strict=True)]
    except (ValueError, orjson.JSONDecodeError):
        pass
    raise ApiError(422, "invalid_cursor", "cursor is not one this API issued", path="cursor")


def _text(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ValueError(f"{value!r} is not text")
    return value


def _instant(value: Any) -> datetime | str:
    """A point in time, or ``-infinity`` (where a conversation without a start sorts)."""
    return value if value == "-infinity" else datetime.fromisoformat(_text(value))


def _uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(_text(value))


def page_limit(raw: str | None, default: int = 50) -> int:
    if raw is None:
        return default
    # ASCII digits only, and few: int() refuses "²" and strings of over 4300 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= _MAX_PAGE:
        raise ApiError(422, "invalid_request", f"limit must be 1..{_MAX_PAGE}", path="limit")
    return int(raw)


def add_resource_routes(app: FastAPI, service: QueryService) -> None:
    """Register the resource routes on the query app."""

    def user_of(raw: str) -> str:
        try:
            return USER.validate_python(raw)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", first_error(exc)[1], path="user") from None

    @app.get("/v1/users")
    async def list_users(request: Request) -> JSONResponse:
        key = await service.authorise(request, "read")
        await service.consistent(request, key.key_id, "conversations")
        limit = page_limit(request.query_params.get("limit"))
        after = decode_cursor(request.query_params.get("cursor"), _text)
        async with service.pool.connection() as conn:
            rows = await queries.users_page(
                conn, key.tenant, after=after[0] if after else None, limit=limit + 1
            )
        page, more = rows[:limit], len(rows) > limit
        await service.audited(request, key, *(row["subject"] for row in page), results=1)
        return JSONResponse(
            {
                "users": [listed_user_json(row) for row in page],
                "next_cursor": encode_cursor([page[-1]["subject"]]) if more else None,
            }
        )

    @app.get("/v1/users/{user}")
    async def get_user(user: str, request: Request) -> JSONResponse:
        key = await service.authorise(request, "read")
        user = user_of(user)
        await service.consistent(request, key.key_id, "conversations")
        async with service.pool.connection() as conn:
            row = await queries.get_user(conn, key.tenant, subject_of(key.tenant, user))
        await service.audited(
            request,
            key,
            subject_of(key.tenant, user),
            results=int(row is not None),
            status=200 if row is not None else 404,
        )
        if row is None:
            raise ApiError(404, "not_found", "no such user", path="user")
        return JSONResponse(user_json(user, row))

    @app.get("/v1/users/{user}/memories")
    async def list_memories(user: str, request: Request) -> JSONResponse:
        key = await service.authorise(request, "read")
        user = user_of(user)
        await service.consistent(request, key.key_id, "memories")
        params = request.query_params
        state = params.get("state", "active")
        if state not in _STATES:
            raise ApiError(422, "invalid_request", f"state must be one of {_STATES}", "state")
        sector = params.get("sector")
        if sector is not None and sector not in SECTORS:
            raise ApiError(422, "invalid_request", f"sector must be one of {SECTORS}", "sector")
        limit = page_limit(params.get("limit"))
        after = decode_cursor(params.get("cursor"), _instant, _uuid)
        async with service.pool.connection() as conn:
            rows = await memories_page(
                conn,
                key.tenant,
                subject_of(key.tenant, user),
                state=state,
                sector=sector,
                after=after,
                limit=limit + 1,
            )
        page, more = rows[:limit], len(rows) > limit
        last = page[-1] if page else None
        await service.audited(request, key, subject_of(key.tenant, user), results=len(page))
        return JSONResponse(
            {
                "memories": [memory_json(row) for row in page],
                "next_cursor": encode_cursor([last["observed_at"].isoformat(),
                                              str(last["memory_id"])])
                if more and last else None,
            }
        )  # fmt: skip

    @app.post("/v1/users/{user}/memories", openapi_extra=documented_body(AssertRequest))
    async def assert_memory(user: str, request: Request) -> JSONResponse:
        key = await service.authorise(request, "write")
        user = user_of(user)
        parsed = validated(AssertRequest, await read_json(request))
        subject = subject_of(key.tenant, user)
        idempotency = request.headers.get("idempotency-key")
        if idempotency is not None and not 1 <= len(idempotency) <= 200:
            raise ApiError(422, "invalid_request", "Idempotency-Key is 1..200 characters")
        if idempotency:
            event_id = derived_event_id("memory.asserted", key.tenant, subject, idempotency)
            memory_id = derived_event_id("memory", str(event_id))
        else:
            event_id = memory_id = uuid.uuid4()
        event = MemoryAsserted.create(
            id=event_id,
            tenant=key.tenant,
            subject=subject,
            source=Source(platform="memstream", event_id=idempotency),
            occurred_at=utc_now(),
            data={
                "memory_id": memory_id,
                "content": parsed.content,
                "sector": parsed.sector,
                "salience": parsed.salience,
                "asserted_by": parsed.asserted_by or f"api-key:{key.key_id}",
            },
        )
        position = await service.append(event)
        return JSONResponse(
            {"memory_id": str(memory_id), "event_id": str(event.id), "position": position},
            status_code=201,
        )

    @app.delete("/v1/users/{user}/memories/{memory_id}")
    async def retract_memory(user: str, memory_id: str, request: Request) -> JSONResponse:
        key = await service.authorise(request, "write")
        user = user_of(user)
        try:
            parsed_id = uuid.UUID(memory_id)
        except ValueError:
            raise ApiError(422, "invalid_request", "memory_id is not a UUID", "memory_id") from None
        reason = _reason(request)
        subject = subject_of(key.tenant, user)
        async with service.pool.connection() as conn:
            memory = await get_memory(conn, key.tenant, parsed_id)
        if memory is None or memory["subject"] != subject or memory["content"] is None:
            raise ApiError(404, "not_found", "this user has no such memory", path="memory_id")
        event = MemoryRetracted.create(
            # A repeated DELETE appends the same event: projections apply it once.
            id=derived_event_id("memory.retracted", key.tenant, str(parsed_id)),
            tenant=key.tenant,
            subject=subject,
            source=Source(platform="memstream"),
            occurred_at=utc_now(),
            data={"memory_id": parsed_id, "reason": reason},
        )
        position = await service.append(event)
        return JSONResponse(
            {"memory_id": str(parsed_id), "event_id": str(event.id), "position": position},
            status_code=202,
        )

    @app.delete(
        "/v1/users/{user}",
        responses={202: {"description": "erased; some read models have not purged it yet"}},
    )
    async def forget_user(user: str, request: Request) -> JSONResponse:
        """Erase the user: their data key is destroyed and ``user.forgotten`` appended. 200
        once every read model has purged them (within ``X-Memstream-Wait-Ms``, default 2000,
        at most 10000); else 202 with the position to wait on, in ``X-Memstream-After``.
        Forgetting a user memstream does not know, or already forgot, answers the same
        (``held`` is then all zeros)."""
        key = await service.authorise(request, "admin")
        user = user_of(user)
        reason = _reason(request)
        wait_ms = parse_wait_ms(request.headers.get("x-memstream-wait-ms"))
        subject = subject_of(key.tenant, user)
        async with service.pool.connection() as conn:
            held = await personal_data.held(conn, key.tenant, subject)
        event = personal_data.erasure(
            key.tenant, subject, requested_by=f"api-key:{key.key_id}", reason=reason
        )
        position = await service.append(event)  # destroys the key, then appends
        behind = await personal_data.wait_purged(
            service.pool,
            position,
            topic_prefix=service.settings.topic_prefix,
            wait_ms=wait_ms,
            slot=service.waits.hold(key.key_id),
        )
        personal_data.record_erasure(event, position, held, behind)
        await service.audited(request, key, subject, results=sum(held.values()), entry_type=ERASURE)
        body: dict[str, Any] = {
            "user": user,
            "status": "pending" if behind else "forgotten",
            "event_id": str(event.id),
            "forgotten_at": event.occurred_at.isoformat(),
            "position": position,
            "held": held,
        }
        if behind:
            body["waiting_for"] = behind
        return JSONResponse(
            body, status_code=202 if behind else 200, headers={"X-Memstream-After": position}
        )

    @app.get("/v1/users/{user}/export", response_model=None)
    async def export_user(user: str, request: Request) -> StreamingResponse:
        """Everything memstream holds about the user, as one JSON document streamed as it
        is read: the read models, then the user's events from the log, decrypted. 404 when
        no read model holds anything of them (unknown, or forgotten)."""
        key = await service.authorise(request, "admin")
        user = user_of(user)
        await service.consistent(
            request, key.key_id, "conversations", "memories", "embeddings", "summaries"
        )
        try:
            export = await personal_data.Export.open(
                service.pool, service.settings, key.tenant, subject_of(key.tenant, user)
            )
        except BrokerUnavailable as exc:
            raise ApiError(
                503, "log_unavailable", "the event log is unavailable; retry later",
                headers={"Retry-After": "5"},
            ) from exc  # fmt: skip
        if export is None:
            raise ApiError(404, "not_found", "memstream holds nothing about this user", "user")
        await service.audited(request, key, subject_of(key.tenant, user), results=None)  # streamed
        return StreamingResponse(export.chunks(), media_type="application/json")

    @app.get("/v1/users/{user}/conversations")
    async def list_conversations(user: str, request: Request) -> JSONResponse:
        key = await service.authorise(request, "read")
        user = user_of(user)
        await service.consistent(request, key.key_id, "conversations")
        limit = page_limit(request.query_params.get("limit"), default=20)
        after = decode_cursor(request.query_params.get("cursor"), _instant, _text)
        async with service.pool.connection() as conn:
            rows = await queries.conversations_page(
                conn, key.tenant, subject_of(key.tenant, user), after=after, limit=limit + 1
            )
        page, more = rows[:limit], len(rows) > limit
        last = page[-1] if page else None
        await service.audited(request, key, subject_of(key.tenant, user), results=len(page))
        return JSONResponse(
            {
                "conversations": [conversation_json(row) for row in page],
                "next_cursor": encode_cursor(
                    [iso(last["started_at"]) or "-infinity", last["conversation_id"]]
                )
                if more and last else None,
            }
        )  # fmt: skip

    @app.get("/v1/conversations/{conversation_id}")
    async def get_conversation(conversation_id: str, request: Request) -> JSONResponse:
        key = await service.authorise(request, "read")
        if "\x00" in conversation_id:  # no id holds one; PostgreSQL text cannot
            raise ApiError(404, "not_found", "no such conversation", path="conversation_id")
        await service.consistent(request, key.key_id, "conversations")
        async with service.pool.connection() as conn:
            row = await queries.get_conversation(conn, key.tenant, conversation_id)
        if row is None:
            raise ApiError(404, "not_found", "no such conversation", path="conversation_id")
        await service.audited(
            request, key, row["subject"], results=1, conversation_id=conversation_id
        )
        return JSONResponse({"user": row["subject"].partition("/")[2], **conversation_json(row)})
