"""The query service's routes but the resources (services/query/resources.py) and
health:

- ``POST /v1/memories/search`` — the caller's memories and passages (what was said) for a
  query, ranked (services/query/search.py), each with its score breakdown and provenance;
- ``POST /v1/transcripts/search`` — the same search over passages only, one turn a result;
- ``GET /v1/users/{user}/briefing`` — the call-start briefing (services/briefing.py);
- ``POST /v1/context`` — a prompt-ready context for the caller within a token budget
  (services/query/context.py), optionally progressive as Server-Sent Events;
- ``POST /v1/tools/elevenlabs/memory-search`` and ``POST /v1/tools/vapi`` — the agent
  tools, answered from the call's prefetches when they cover the question;
- ``GET /v1/calls/{call_id}/context`` — a call in progress as Server-Sent Events;
- ``GET /v1/audit`` — the audit trail of a user or an API key (admin keys).

What they share is the :class:`~services.query.service.QueryService`; what they answer
is shaped in services/query/serialise.py. services/query/app.py has the whole picture.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import TypeAdapter, ValidationError

from projections.audit import audit_trail, entry_json
from projections.live import Prefetch, covering
from services import tenants
from services.briefing import Briefing
from services.database import unavailable
from services.errors import ApiError
from services.identity import normalise_phone
from services.logs import call_fields
from services.query import tools
from services.query.metrics import TOOL_ANSWERS
from services.query.requests import (
    ContextRequest,
    SearchRequest,
    TranscriptSearchRequest,
    User,
    documented_body,
    first_error,
    read_json,
    subject_of,
    validated,
)
from services.query.search import SearchQuery, SearchWeights
from services.query.serialise import (
    briefing_json,
    context_json,
    hit_json,
    prefetch_json,
    sse,
    transcript_hit_json,
)
from services.query.service import QueryService
from streams.audit import subject_hash as audit_subject_hash

__all__ = ["add_query_routes"]

# The query app's logger, wherever its lines are written from (docs/operations.md lists
# them under this name).
logger = logging.getLogger("services.query.app")

#: Transcript search lists turns one by one: no neighbour merged into another.
TRANSCRIPT_WEIGHTS = SearchWeights(merge_neighbours=False)

_USER: TypeAdapter[str] = TypeAdapter(User)

#: A call's context stream: how often it looks for new prefetches, how long it lasts by
#: default and at most, how often it sends a comment through idle proxies.
PREFETCH_POLL_S = 0.25
CALL_STREAM_DEFAULT_S = 900
CALL_STREAM_MAX_S = 3600
KEEP_ALIVE_S = 15.0
#: The deeper search of a call's context stream (tier 2).
DEEP_RESULTS = 20


def _flag(raw: str | None, name: str) -> bool:
    """A boolean query parameter: true/false, 1/0 (absent: false); 422 otherwise."""
    if raw is None or raw.lower() in ("false", "0"):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise ApiError(422, "invalid_request", f"{name} must be true or false", path=name)


def _stream_seconds(raw: str | None) -> int:
    """``?timeout=`` of a call's context stream: whole seconds, 1..3600 (default 900)."""
    if raw is None:
        return CALL_STREAM_DEFAULT_S
    if raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= CALL_STREAM_MAX_S:
        return int(raw)
    raise ApiError(
        422,
        "invalid_request",
        f"timeout must be whole seconds, 1..{CALL_STREAM_MAX_S}",
        path="timeout",
    )


#: The call context stream's parameters and answer, for the OpenAPI document (the route
#: reads its query parameters itself, after the key: a request without one is a 401).
_CALL_CONTEXT_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "in": "query",
            "name": "caller_id",
            "required": False,
            "schema": {"type": "string", "maxLength": 256},
            "description": "The caller's number the platform bound to the call, when memstream"
            " has not recorded the call's caller (as the agent tools' caller_id).",
        },
        {
            "in": "query",
            "name": "user",
            "required": False,
            "schema": {"type": "string", "maxLength": 256},
            "description": "The user, only when nothing is bound to the call and the key"
            " allows a user argument (as the agent tools').",
        },
        {
            "in": "query",
            "name": "deep",
            "required": False,
            "schema": {"type": "boolean", "default": False},
            "description": "Also send, once, a full search for the call's latest topic (tier 2).",
        },
        {
            "in": "query",
            "name": "timeout",
            "required": False,
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": CALL_STREAM_MAX_S,
                "default": CALL_STREAM_DEFAULT_S,
            },
            "description": "Seconds after which the stream ends.",
        },
    ],
    "responses": {
        "200": {
            "description": 'Server-Sent Events: `event: context`, data `{"tier": 0,'
            ' "briefing"}`, then `{"tier": 1, "seq", "topic", "hits"}` per prefetched'
            ' topic, and with deep=true `{"tier": 2, "seq", "topic", "hits"}` once;'
            " `: keep-alive` comments (docs/query.md).",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
}


def add_query_routes(app: FastAPI, service: QueryService) -> None:
    """Register the search, briefing, context, agent tool, call context and audit routes
    on the query app."""

    @app.post("/v1/memories/search", openapi_extra=documented_body(SearchRequest))
    async def search(request: Request) -> JSONResponse:
        key = await service.authorise(request, "read")
        parsed = validated(SearchRequest, await read_json(request))
        await service.consistent(request, key.key_id, "conversations", "memories", "embeddings")
        query = SearchQuery(
            tenant=key.tenant,
            subject=subject_of(key.tenant, parsed.user),
            text=parsed.query,
            limit=parsed.limit,
            sectors=tuple(parsed.sectors) if parsed.sectors else None,
            min_score=parsed.min_score,
            sources=tuple(dict.fromkeys(parsed.sources)),
        )
        hits, model = await service.search(query)
        await service.audited(request, key, query.subject, results=len(hits))
        return JSONResponse(
            {
                "user": parsed.user,
                "query": parsed.query,
                "model": model,
                "results": [hit_json(h) for h in hits],
            }
        )

    @app.post("/v1/transcripts/search", openapi_extra=documented_body(TranscriptSearchRequest))
    async def transcripts(request: Request) -> JSONResponse:
        key = await service.authorise(request, "read")
        parsed = validated(TranscriptSearchRequest, await read_json(request))
        await service.consistent(request, key.key_id, "conversations", "embeddings")
        subject = subject_of(key.tenant, parsed.user)
        # The memory search's passages, one turn a result.
        hits, _ = await service.search(
            SearchQuery(key.tenant, subject, parsed.query, limit=parsed.limit,
                        sources=("passages",)),
            weights=TRANSCRIPT_WEIGHTS,
        )  # fmt: skip
        await service.audited(request, key, subject, results=len(hits))
        return JSONResponse(
            {
                "user": parsed.user,
                "query": parsed.query,
                "results": [transcript_hit_json(h) for h in hits],
            }
        )

    async def tool_answer(
        request: Request, key: tenants.ApiKey, subject: str, text: str, call: str | None
    ) -> str:
        """One line for the agent; audited per tool call. From what the live processor
        prefetched for the call when that covers the question (its own caller's only: one
        indexed query, no embedding); otherwise the search (memories and passages)."""
        if call:
            covered = covering(await service.prefetches(key.tenant, call, subject), text)
            if covered:
                best = covered[: tools.TOOL_RESULTS]
                await service.audited(
                    request, key, subject, results=len(best), conversation_id=call
                )
                TOOL_ANSWERS.labels("prefetched").inc()
                return tools.prefetched_answer_text(text, best)
        query = SearchQuery(key.tenant, subject, text, limit=tools.TOOL_RESULTS)
        hits, _ = await service.search(query)
        await service.audited(request, key, subject, results=len(hits), conversation_id=call)
        TOOL_ANSWERS.labels("search").inc()
        return tools.answer_text(text, hits)

    @app.get("/v1/users/{user}/briefing")
    async def briefing(
        user: str, request: Request, conversation_id: str | None = None
    ) -> JSONResponse:
        """The briefing. An ``agent`` key reads only the caller of a call it is in: with
        ``?conversation_id=`` (the platform's), whose caller must be ``user``."""
        key = await service.authorise(request, "read", "agent")
        try:
            user = _USER.validate_python(user)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", first_error(exc)[1], path="user") from None
        subject = subject_of(key.tenant, user)
        if not key.allows("read"):
            # The call an agent key names is looked up: a NUL in it would reach SQL. (A
            # read key's briefing ignores the id.)
            conversation_id = tools.check_id(conversation_id, "conversation_id")
            if not conversation_id:
                raise ApiError(
                    403,
                    "insufficient_scope",
                    "an agent key reads the briefing of the call it names: add"
                    " ?conversation_id=<the platform's conversation id>",
                    path="conversation_id",
                )
            bound = await service.conversation_subject(key.tenant, conversation_id)
            if bound != subject:
                raise ApiError(
                    403,
                    "not_this_call",
                    "an agent key reads only the caller of the call it names",
                    path="conversation_id",
                )
        await service.consistent(request, key.key_id, "conversations", "memories", "summaries")
        found = await service.briefing(key.tenant, subject)
        known = sum(1 for value in found.variables().values() if value)
        await service.audited(request, key, subject, results=known, conversation_id=conversation_id)
        return JSONResponse(briefing_json(user, found))

    @app.post("/v1/context", response_model=None, openapi_extra=documented_body(ContextRequest))
    async def context(request: Request) -> JSONResponse | StreamingResponse:
        key = await service.authorise(request, "read")
        parsed = validated(ContextRequest, await read_json(request))
        subject = subject_of(key.tenant, parsed.user)
        await service.consistent(
            request, key.key_id, "conversations", "memories", "embeddings", "summaries"
        )
        if not parsed.stream:
            _, _, assembled = await service.context(key.tenant, subject, parsed)
            await service.audited(request, key, subject, results=len(assembled.included))
            return JSONResponse(context_json(parsed.user, assembled))
        # Recorded before the first event: a refusal must come before the 200 is sent.
        await service.audited(request, key, subject, results=None)

        async def events() -> AsyncIterator[bytes]:
            # Most useful first: the briefing is one lookup, the search needs the model.
            found = await service.briefing(key.tenant, subject)
            yield sse("briefing", {"user": parsed.user, **found.variables()})
            hits, _, assembled = await service.context(key.tenant, subject, parsed, found)
            yield sse("memories", {"results": [hit_json(h) for h in hits]})
            yield sse("context", context_json(parsed.user, assembled))

        return StreamingResponse(events(), media_type="text/event-stream")

    async def bound_subject(
        key: tenants.ApiKey,
        *,
        conversation_id: str | None = None,
        caller_id: str | None = None,
        user: str | None = None,
    ) -> str:
        """The caller a tool call is about: what the platform bound to the call — the
        caller memstream recorded for its conversation, else its caller's number. A
        ``user`` argument is written by the LLM, which the person on the phone can talk
        into anything: it counts only when nothing is bound and the key allows it
        (docs/security.md)."""
        if conversation_id:
            subject = await service.conversation_subject(key.tenant, conversation_id)
            if subject is not None:
                return subject
        if caller_id:
            known = await service.tenant(key.tenant)
            phone = normalise_phone(caller_id, known.default_region)
            if phone is not None:
                return subject_of(key.tenant, phone)
        if user and key.allow_user_argument:
            return subject_of(key.tenant, user)
        if user:
            raise ApiError(
                403,
                "user_argument_not_allowed",
                "this key takes the caller from the call (caller_id, conversation_id), not"
                " from a user argument",
                path="user",
            )
        if caller_id:
            raise ApiError(
                422, "unknown_caller", "caller_id is not a phone number we can place", "caller_id"
            )
        raise ApiError(
            422,
            "unknown_caller",
            "no caller is bound to this call: bind caller_id to {{system__caller_id}} or"
            " conversation_id to {{system__conversation_id}}",
            path="caller_id",
        )

    @app.post("/v1/tools/elevenlabs/memory-search")
    async def elevenlabs_tool(request: Request) -> JSONResponse:
        key = await service.authorise(request, "agent", "read")
        arguments = tools.elevenlabs_arguments(await read_json(request))
        subject = await bound_subject(
            key,
            conversation_id=arguments.conversation_id,
            caller_id=arguments.caller_id,
            user=arguments.user,
        )
        answer = await tool_answer(
            request, key, subject, arguments.query, arguments.conversation_id
        )
        return JSONResponse({"result": answer})

    @app.post("/v1/tools/vapi")
    async def vapi_tools(request: Request) -> JSONResponse:
        key = await service.authorise(request, "agent", "read")
        body = await read_json(request)
        message = tools.vapi_tool_calls(body)
        results: list[dict[str, str]] = []
        for index, call in enumerate(message.calls):
            subject = None
            try:
                if index:  # the request paid for its first call
                    service.charge(key)
                text = call.arguments.get("query")
                if not isinstance(text, str) or not text.strip():
                    raise ApiError(422, "invalid_payload", "query is missing", path="query")
                tools.check_query(text, "query")
                user = call.arguments.get("user")
                subject = await bound_subject(
                    key,
                    conversation_id=message.call_id,
                    caller_id=message.number,
                    user=tools.check_id(user, "user", code="invalid_payload")
                    if isinstance(user, str)
                    else None,
                )
                answer = await tool_answer(request, key, subject, text.strip(), message.call_id)
            except ApiError as exc:
                # One failed call must not fail the others: Vapi reads each result. The
                # request still answers 200, so the refusal shows only here and in the log.
                logger.info(
                    "tool call refused: %s",
                    exc.code,
                    extra={
                        **call_fields(
                            tenant=key.tenant, subject=subject, conversation_id=message.call_id
                        ),
                        "tool_call_id": call.id,
                        "code": exc.code,
                    },
                )
                results.append({"toolCallId": call.id, "error": exc.message})
                continue
            results.append({"toolCallId": call.id, "result": answer})
        return JSONResponse({"results": results})

    @app.get(
        "/v1/calls/{call_id}/context",
        response_model=None,
        response_class=StreamingResponse,  # text/event-stream only, in the document
        openapi_extra=_CALL_CONTEXT_OPENAPI,
    )
    async def call_context(call_id: str, request: Request) -> StreamingResponse:
        """A call in progress as Server-Sent Events, most useful first: the caller's
        briefing (tier 0), then each topic's memories and passages as the live processor
        prefetches them (tier 1), and with ``?deep=true`` a full search for the latest
        topic (tier 2). Bound to the call's caller like the agent tools; ends after
        ``?timeout=`` seconds (default 900) or when the client leaves."""
        key = await service.authorise(request, "agent", "read")
        params = request.query_params
        call = tools.check_id(call_id, "call_id")
        if call is None:
            raise ApiError(422, "invalid_request", "call_id is blank", path="call_id")
        caller_id = tools.check_id(params.get("caller_id"), "caller_id")
        user = tools.check_id(params.get("user"), "user")
        deep = _flag(params.get("deep"), "deep")
        timeout = _stream_seconds(params.get("timeout"))
        subject = await bound_subject(key, conversation_id=call, caller_id=caller_id, user=user)
        if not await service.read_model_exists("live.prefetches"):
            raise ApiError(503, "read_model_unavailable", "the live read model is not built yet")
        await service.consistent(request, key.key_id, "conversations", "memories", "summaries")
        found = await service.briefing(key.tenant, subject)
        known = sum(1 for value in found.variables().values() if value)
        # Recorded once, before the first event: a refusal must come before the 200.
        await service.audited(request, key, subject, results=known, conversation_id=call)
        return StreamingResponse(
            call_events(key.tenant, call, subject, found, deep=deep, timeout=timeout),
            media_type="text/event-stream",
            # Through proxies as it is written: nothing cached, nothing buffered.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def call_events(
        tenant: str, call: str, subject: str, found: Briefing, *, deep: bool, timeout: int
    ) -> AsyncIterator[bytes]:
        """The events of a call's context stream (``call_context``)."""
        clock = asyncio.get_running_loop().time
        deadline = clock() + timeout
        yield sse(
            "context", {"tier": 0, "briefing": briefing_json(subject.partition("/")[2], found)}
        )
        written = clock()
        sent: set[uuid.UUID] = set()
        searched = not deep
        while True:
            try:
                prefetches = await service.prefetches(tenant, call, subject)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                # The stream outlives a database blip: the next poll tries again.
                logger.warning(
                    "call context poll failed: %s",
                    type(exc).__name__,
                    extra=call_fields(tenant=tenant, subject=subject, conversation_id=call),
                )
                prefetches = []
            for prefetch in prefetches:
                if prefetch.event_id not in sent:
                    sent.add(prefetch.event_id)
                    yield sse("context", prefetch_json(prefetch))
                    written = clock()
            if not searched and prefetches:
                searched = True
                yield await deep_event(tenant, subject, prefetches[-1])
                written = clock()
            now = clock()
            if now >= deadline:
                return
            if now - written >= KEEP_ALIVE_S:
                yield b": keep-alive\n\n"
                written = now
            await asyncio.sleep(min(PREFETCH_POLL_S, deadline - now))

    async def deep_event(tenant: str, subject: str, latest: Prefetch) -> bytes:
        """Tier 2: the full search (memories and passages) for the call's latest topic;
        an ``error`` event when it cannot be made (the stream goes on)."""
        text = latest.topic[: tools.MAX_QUERY_CHARS]
        try:
            hits, _ = await service.search(SearchQuery(tenant, subject, text, limit=DEEP_RESULTS))
        except ApiError as exc:
            return sse("error", {"tier": 2, **exc.body()})
        except Exception as exc:
            if not unavailable(exc):
                raise
            return sse(
                "error",
                {
                    "tier": 2,
                    "error": {
                        "code": "database_unavailable",
                        "message": "the database is unavailable",
                    },
                },
            )
        return sse(
            "context",
            {
                "tier": 2,
                "seq": latest.seq,
                "topic": latest.topic,
                "hits": [hit_json(h) for h in hits],
            },
        )

    @app.get("/v1/audit")
    async def audit(request: Request) -> JSONResponse:
        """The audit trail (streams/audit.py) of ``?user=`` and/or of ``?key_id=`` (an API
        key's id), newest first, ``?since=`` an ISO time, ``?limit=`` (<= 1000). Admin keys
        only; it holds no personal data beyond the subject's hash."""
        key = await service.authorise(request, "admin")
        params = request.query_params
        user = params.get("user")
        key_id = tools.check_id(params.get("key_id"), "key_id")
        if user is None and key_id is None:
            raise ApiError(422, "invalid_request", "give user or key_id", path="user")
        try:
            subject_hash = (
                audit_subject_hash(subject_of(key.tenant, _USER.validate_python(user)))
                if user is not None
                else None
            )
            since = datetime.fromisoformat(params["since"]) if "since" in params else None
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", first_error(exc)[1], path="user") from None
        except ValueError:
            raise ApiError(422, "invalid_request", "since is an ISO 8601 time", "since") from None
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        raw_limit = params.get("limit", "100")
        if not (
            raw_limit.isascii()
            and raw_limit.isdigit()
            and len(raw_limit) <= 4
            and 1 <= int(raw_limit) <= 1000
        ):
            raise ApiError(422, "invalid_request", "limit must be 1..1000", path="limit")
        if not await service.read_model_exists("audit.entries"):
            raise ApiError(503, "read_model_unavailable", "the audit read model is not built yet")
        await service.consistent(request, key.key_id, "audit")
        async with service.pool.connection() as conn:
            rows = await audit_trail(
                conn,
                key.tenant,
                subject_hash=subject_hash,
                key_id=key_id,
                since=since,
                limit=int(raw_limit),
            )
        return JSONResponse(
            {
                "user": user,
                "subject_hash": subject_hash,
                "key_id": key_id,
                "entries": [entry_json(row) for row in rows],
            }
        )
