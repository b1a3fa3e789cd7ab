"""The query service: what agents read, over the read models.

Routes (every one but health and metrics takes ``Authorization: Bearer <api key>``; the
key's tenant is the only tenant a request can see):

- ``POST /v1/memories/search`` — the caller's memories and passages (what was said) for a
  query, ranked (services/query/search.py), each with its score breakdown and provenance;
- ``POST /v1/transcripts/search`` — the same search over passages only, one turn a result;
- ``GET /v1/users/{user}/briefing`` — the call-start briefing (services/briefing.py),
  the same one the ingest service's initiation webhooks answer with;
- ``POST /v1/context`` — a prompt-ready context for the caller within a token budget
  (services/query/context.py), optionally progressive as Server-Sent Events;
- ``POST /v1/tools/elevenlabs/memory-search`` — the search as an ElevenLabs server
  tool: the caller bound from ``{{system__caller_id}}``, a short text answer;
- ``POST /v1/tools/vapi`` — Vapi ``tool-calls``: every call answered, in order, with one
  line of text; both tools answer from what the live processor prefetched for the call
  when that covers the question (projections/live.py), without a search;
- ``GET /v1/calls/{call_id}/context`` — a call in progress as Server-Sent Events: the
  briefing, then each topic's prefetched memories and passages as the live processor
  finds them, and optionally a deeper search;
- the resources (services/query/resources.py): users, their memories and
  conversations, ``POST`` / ``DELETE`` a memory;
- ``GET /v1/audit`` — the audit trail of a user or an API key (admin keys);
- ``GET /health/live``, ``GET /health/ready``, ``GET /metrics``.

Every read of a user's personal data is recorded in the audit trail (streams/audit.py)
before it is answered: ``service.audited`` in each route that reads one (one entry per
agent tool call, per user listed); ``tests/integration/query/test_audit.py`` has the table.

Any route that reads takes ``X-Memstream-After`` (read-your-writes,
services/query/consistency.py).

A refused request answers ``{"error": {"code", "message", "path"?}}`` with a 4xx and
counts in ``memstream_query_rejected_total``; a key over its rate gets 429 with
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import TypeAdapter, ValidationError

from projections import PROJECTIONS
from projections.audit import audit_trail, entry_json
from projections.conversations.queries import get_conversation
from projections.embeddings.processor import Embedder
from projections.live import Prefetch, call_prefetches, covering
from projections.memories import top_memories
from projections.providers.exceptions import ProviderUnavailable
from projections.providers.resilience import fell_back
from schemas import Event, PrefetchedHit, utc_now
from services import tenants
from services.auth import ApiKeys
from services.briefing import Briefing, load_briefing
from services.database import add_unavailable_handler, connection_pool, unavailable
from services.errors import ApiError, refuse_framework_errors
from services.expiring import Expiring
from services.health import add_health_routes
from services.identity import normalise_phone
from services.logs import call_fields
from services.observe import Observe
from services.query import tools
from services.query.consistency import (
    WaitSlots,
    parse_positions,
    parse_wait_ms,
    wait_until_past,
)
from services.query.context import (
    Context,
    assemble,
    load_tokenizers,
    memory_piece,
    passage_piece,
    recent_turns,
)
from services.query.metrics import (
    RATE_LIMITED,
    REJECTED,
    REQUEST_SECONDS,
    REQUESTS,
    SEARCH_SECONDS,
    TOOL_ANSWERS,
)
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
from services.query.resources import add_resource_routes
from services.query.search import (
    Hit,
    SearchQuery,
    SearchWeights,
    dense_candidates,
    lexical_candidates,
    rank_candidates,
)
from services.ratelimit import FailedAuthentications, RateLimiter
from streams import BrokerUnavailable, EventLog, Settings, versions
from streams.audit import READ, AuditTrail, EntryType
from streams.audit import subject_hash as audit_subject_hash
from streams.exceptions import AuditUnavailable
from streams.topics import ensure_topics

logger = logging.getLogger(__name__)

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


def _embedders(
    model: str | None, settings: Settings, threads: int | None = None
) -> tuple[Embedder, Embedder | None]:
    """The query embedder for `model` (None: the local model) and its fallback; `threads`
    is the local model's (None: onnxruntime's choice, one per core)."""
    from projections.embeddings.local import LocalEmbedder

    if not model:
        return LocalEmbedder(threads=threads), None
    from projections.embeddings.openai_embedder import OpenAIEmbedder

    remote = OpenAIEmbedder.from_settings(settings.replace(embedding_model=model))
    return remote, LocalEmbedder(threads=threads)


class QueryService:
    """What the routes share: the database pool, the query embedder, caches, rate limits."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        fallback: Embedder | None = None,
        *,
        embed_threads: int | None = None,
    ) -> None:
        """``embedder`` embeds queries with the model the embedding processor uses (from
        settings when not given); ``fallback`` (the local model) when it is unavailable.
        ``embed_threads``: the local model's threads (None: one per core, the lowest
        latency for one question; the live processor takes 1, which spends a third less
        CPU per text on a busy machine: docs/benchmarks.md, "live")."""
        self.settings = settings
        self._embed_threads = embed_threads
        # Given embedders are used as they are; otherwise the model follows the live
        # embedder version (`memstream reprocess embeddings --model ... --swap`).
        self._follow_embedder = embedder is None
        self._embedder_model: Expiring[str, str | None] = Expiring(settings.cache_ttl_s)
        self._model: str | None = settings.embedding_model
        self.pool = connection_pool(settings, min_size=2)
        if embedder is None:
            embedder, fallback = _embedders(settings.embedding_model, settings, embed_threads)
        self.embedder = embedder
        self.fallback = fallback
        self.limiter = RateLimiter(
            settings.query_rate_limit, settings.query_rate_burst, refused=RATE_LIMITED
        )
        self.auth_failures = FailedAuthentications(
            settings.auth_failure_limit, settings.auth_failure_window_s
        )
        self.waits = WaitSlots(settings.query_max_waits)
        self.keys = ApiKeys(self.pool, settings, self.auth_failures)
        # Keys and tenants outlive a database outage by up to `cache_stale_s`.
        ttl, stale = settings.cache_ttl_s, settings.cache_stale_s
        self._tenants: Expiring[str, tenants.Tenant | None] = Expiring(ttl, stale_s=stale)
        self._read_models: Expiring[str, bool] = Expiring(ttl)
        self._log: EventLog | None = None
        self._audit: AuditTrail | None = None
        # The projections a route may wait for, and the topics each consumes.
        self.readers = {name: cls.topics for name, cls in PROJECTIONS.items()}

    @property
    def log(self) -> EventLog:
        if self._log is None:
            raise RuntimeError("the query service is not started")
        return self._log

    @property
    def audit(self) -> AuditTrail:
        if self._audit is None:
            raise RuntimeError("the query service is not started")
        return self._audit

    async def start(self) -> None:
        await self.pool.open(wait=True, timeout=10)
        self._log = EventLog(self.settings)
        await self._log.start()
        if self.settings.audit_trail:
            # The trail's topic must exist before its first entry is sent, whichever ASGI
            # server started this app (`memstream query` creates the topics itself).
            await ensure_topics(self.settings)
        self._audit = AuditTrail.from_settings(self.settings, self._log)
        await self._audit.start()
        # The first inference pays for onnxruntime's lazy initialisation: not a caller.
        await asyncio.to_thread((self.fallback or self.embedder).embed, ["warm up"])
        await asyncio.to_thread(load_tokenizers)

    async def stop(self) -> None:
        # Requests in flight have finished (the server waits for them before the
        # lifespan's shutdown): every entry they recorded is appended before the producer
        # stops.
        if self._audit is not None:
            await self._audit.close()
        if self._log is not None:
            await self._log.stop()
        await self.pool.close()

    # -- steps ------------------------------------------------------------------------

    async def authorise(self, request: Request, *scopes: str) -> tenants.ApiKey:
        """The request's API key (401 without a valid one, 429 over its rate, 403 when it
        has none of ``scopes``: docs/security.md)."""
        key = await self.keys.of(request)
        self.charge(key)
        if not key.allows(*scopes):
            raise ApiError(
                403,
                "insufficient_scope",
                f"this key may {', '.join(key.scopes)}; this route needs one of:"
                f" {', '.join(scopes)} (memstream keys create --scope ...)",
            )
        return key

    def charge(self, key: tenants.ApiKey) -> None:
        """Spend one of the key's requests (429 with ``Retry-After`` when it has none)."""
        self.limiter.spend(key.key_id)

    async def conversation_subject(self, tenant: str, conversation_id: str) -> str | None:
        """The subject memstream recorded for a platform conversation (from the platform's
        own webhooks), or None when the conversations read model does not know it yet."""
        if not await self.read_model_exists("conversations.conversations"):
            return None
        async with self.pool.connection() as conn:
            found = await get_conversation(conn, tenant, conversation_id, with_turns=False)
        return found["subject"] if found else None

    async def append(self, event: Event) -> str:
        """Append one event (acks=all); its log position token. 503 if the log is down."""
        try:
            [position] = await self.log.append_many([event])
        except BrokerUnavailable as exc:
            logger.error("append failed: %s", exc, extra=call_fields([event]))
            raise ApiError(
                503, "log_unavailable", "the event log is unavailable; retry later"
            ) from exc
        if position is None:
            # Dated at or before the user's latest erasure (one stamped ahead of this
            # process's clock): the log refuses what would bring the forgotten user back.
            raise ApiError(
                409, "user_forgotten", "the user's erasure is dated at or after this write"
            )
        token = position.token()
        # A write through the query API (a memory asserted or retracted by hand) is rare
        # and worth a line: who changed what about which caller.
        logger.info(
            "%s appended",
            event.type,
            extra={**call_fields([event]), "type": event.type, "position": token},
        )
        return token

    async def audited(
        self,
        request: Request,
        key: tenants.ApiKey,
        *subjects: str,
        results: int | None,
        status: int = 200,
        conversation_id: str | None = None,
        entry_type: EntryType = READ,
    ) -> None:
        """Record in the audit trail that ``key`` read (or erased) the personal data of
        each of ``subjects`` through this request's route (one entry each: a listing names
        several users), before the response discloses any of it. Returns at once while
        the trail's buffer has room; ``503 audit_unavailable`` when it stays full
        (nothing is answered unaudited)."""
        # The route's template, never the path: a path names the user.
        template = getattr(request.scope.get("route"), "path", "unmatched")
        route = f"{request.method} {template}"
        try:
            for subject in subjects:
                await self.audit.record(
                    entry_type,
                    key.tenant,
                    subject,
                    key_id=key.key_id,
                    route=route,
                    status=status,
                    results=results,
                    conversation_id=conversation_id,
                )
        except AuditUnavailable as exc:
            # Counted in memstream_query_rejected_total and memstream_audit_refused_total.
            raise ApiError(
                503,
                "audit_unavailable",
                "the audit trail cannot record this read; retry later",
                headers={"Retry-After": "5"},
            ) from exc

    async def consistent(self, request: Request, key_id: str, *projections: str) -> None:
        """Read-your-writes: wait until these projections are past the request's
        ``X-Memstream-After`` / ``?after=`` positions (services/query/consistency.py), in
        one of the key's wait slots."""
        raw = request.headers.get("x-memstream-after") or request.query_params.get("after")
        positions = parse_positions(raw, self.settings.topic_prefix)
        if not positions:
            return
        wait_ms = parse_wait_ms(request.headers.get("x-memstream-wait-ms"))
        readers = {name: self.readers[name] for name in projections if name in self.readers}
        await wait_until_past(
            self.pool,
            readers,
            positions,
            topic_prefix=self.settings.topic_prefix,
            wait_ms=wait_ms,
            slot=self.waits.hold(key_id),
        )

    async def tenant(self, tenant: str) -> tenants.Tenant:
        async def load() -> tenants.Tenant | None:
            async with self.pool.connection() as conn:
                return await tenants.get_tenant(conn, tenant)

        found = await self._tenants.get(tenant, load)
        if found is None:  # the key outlived its tenant
            raise ApiError(401, "bad_credentials", "the API key's tenant no longer exists")
        return found

    async def read_model_exists(self, view: str) -> bool:
        async def load() -> bool:
            async with self.pool.connection() as conn:
                cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [view])
                row = await cursor.fetchone()
                return bool(row and row[0])

        return await self._read_models.get(view, load)

    async def follow_live_embedder(self) -> None:
        """Embed questions with the model of the live embedder version, when that version
        was recorded with one (checked every few seconds): after a switch to vectors of
        another model, questions must be embedded by it to find them."""
        if not self._follow_embedder:
            return

        async def load() -> str | None:
            async with self.pool.connection() as conn:
                live = await versions.live_version(conn, "embedder")
                recorded = await versions.config(conn, "embedder", live) if live else {}
            overrides = recorded.get("settings") or {}
            if "embedding_model" not in overrides:
                return self.settings.embedding_model
            model: str | None = overrides["embedding_model"]
            return model

        model = await self._embedder_model.get("embedder", load)
        if model != self._model:
            embedder, fallback = await asyncio.to_thread(
                _embedders, model, self.settings, self._embed_threads
            )
            logger.info("questions are now embedded with %s", embedder.name)
            self.embedder, self.fallback, self._model = embedder, fallback, model

    async def embed(self, text: str) -> tuple[list[float], str]:
        """``text``'s vector and the model that made it (the fallback's when the remote
        model is unavailable: the search then reads that model's vectors)."""
        await self.follow_live_embedder()
        # onnxruntime and the HTTP client release the GIL: the loop serves others meanwhile.
        try:
            [vector] = await asyncio.to_thread(self.embedder.embed, [text])
            return vector, self.embedder.name
        except ProviderUnavailable as exc:
            if self.fallback is None:
                raise ApiError(
                    503, "embedding_unavailable", "the embedding model is unavailable"
                ) from exc
            fell_back(exc)
            [vector] = await asyncio.to_thread(self.fallback.embed, [text])
            return vector, self.fallback.name

    async def search(
        self, query: SearchQuery, weights: SearchWeights | None = None
    ) -> tuple[list[Hit], str]:
        if not (
            await self.read_model_exists("memories.memories")
            and await self.read_model_exists("embeddings.embeddings")
        ):
            raise ApiError(
                503, "read_model_unavailable", "the memories read models are not built yet"
            )
        if "passages" in query.sources and not (
            await self.read_model_exists("conversations.passages")
            and await self.read_model_exists("embeddings.passage_vectors")
        ):
            # Versions built before passages existed: memories only until a rebuild
            # (docs/operations.md, "Passages after an upgrade").
            query = replace(query, sources=tuple(s for s in query.sources if s != "passages"))
        # The lexical list needs no vector: it runs while the question is embedded, and
        # the dense list on a second connection, so the database computes both at once
        # (docs/query.md, "Latency").
        began = time.perf_counter()

        async def dense() -> tuple[list[dict[str, Any]], str]:
            vector, model = await self.embed(query.text)
            SEARCH_SECONDS.labels("embed").observe(time.perf_counter() - began)
            async with self.pool.connection() as conn:
                rows = await dense_candidates(
                    conn, query, vector=vector, model=model, weights=weights
                )
            return rows, model

        async with self.pool.connection() as conn:
            lexical = asyncio.create_task(lexical_candidates(conn, query, weights))
            try:
                dense_rows, model = await dense()
                lexical_rows = await lexical
            except BaseException:
                # Not back to the pool with its query still running.
                lexical.cancel()
                with contextlib.suppress(BaseException):
                    await lexical
                raise
            hits = await rank_candidates(
                conn, query, lexical_rows, dense_rows, model=model, now=utc_now(), weights=weights
            )
        SEARCH_SECONDS.labels("rank").observe(time.perf_counter() - began)
        return hits, model

    async def context(
        self,
        tenant: str,
        subject: str,
        request: ContextRequest,
        found: Briefing | None = None,
    ) -> tuple[list[Hit], list[Any], Context]:
        """The search hits (with a query), the caller's top memories and the context."""
        found = found or await self.briefing(tenant, subject)
        hits: list[Hit] = []
        if request.query:
            hits, _ = await self.search(SearchQuery(tenant, subject, request.query, limit=20))
        # After the hits (or alone, without a query), the caller's strongest memories:
        # what the budget leaves room for is still worth knowing.
        async with self.pool.connection() as conn:
            top = await top_memories(conn, tenant, subject, now=utc_now(), limit=20)
        found_ids = {h.memory_id for h in hits}
        memories = [
            memory_piece(h.memory_id, h.content, h.observed_at)
            if h.type == "memory"
            else passage_piece(
                h.conversation_id or "",
                h.turn or 0,
                h.speaker or "caller",
                h.content,
                h.observed_at,
            )
            for h in hits
        ] + [
            memory_piece(m["memory_id"], m["content"], m["observed_at"])
            for m in top
            if m["memory_id"] not in found_ids
        ]
        async with self.pool.connection() as conn:
            turns = await recent_turns(conn, tenant, subject)
        # A passage of the last calls is not quoted twice: it is among their verbatim turns.
        verbatim = {t.ref for t in turns}
        memories = [m for m in memories if m.ref not in verbatim]
        assembled = assemble(
            found.user_profile, memories, turns, request.token_budget, request.tokenizer
        )
        return hits, top, assembled

    async def prefetches(self, tenant: str, conversation_id: str, subject: str) -> list[Prefetch]:
        """What the live processor prefetched for the call, topic by topic, of `subject`
        only (projections/live.py; one indexed query). Empty when the live read model does
        not exist (a database not migrated to 0010_live yet)."""
        if not await self.read_model_exists("live.prefetches"):
            return []
        async with self.pool.connection() as conn:
            return await call_prefetches(conn, tenant, conversation_id, subject)

    async def briefing(self, tenant: str, subject: str) -> Briefing:
        if not await self.read_model_exists("conversations.users"):
            raise ApiError(
                503, "read_model_unavailable", "the conversations read model is not built yet"
            )
        async with self.pool.connection() as conn:
            return await load_briefing(
                conn,
                tenant,
                subject,
                with_memories=await self.read_model_exists("memories.memories"),
                with_profile=await self.read_model_exists("summaries.profiles"),
            )


def context_json(user: str, context: Context) -> dict[str, Any]:
    return {
        "user": user,
        "context": context.text,
        "tokens": context.tokens,
        "token_budget": context.token_budget,
        "tokenizer": context.tokenizer,
        "included": [{"section": p.section, "ref": p.ref} for p in context.included],
        "dropped": context.dropped,
    }


def briefing_json(user: str, found: Briefing) -> dict[str, Any]:
    """The briefing as ``GET /v1/users/{user}/briefing`` answers it."""
    return {"user": user, **found.variables(), "greeting": found.greeting()}


def prefetch_json(prefetch: Prefetch) -> dict[str, Any]:
    """One topic's prefetch as a call's context stream sends it (tier 1)."""
    return {
        "tier": 1,
        "seq": prefetch.seq,
        "topic": prefetch.topic,
        "hits": [prefetched_hit_json(hit) for hit in prefetch.hits],
    }


def prefetched_hit_json(hit: PrefetchedHit) -> dict[str, Any]:
    return hit.model_dump(mode="json")


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event (JSON data on one line)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def hit_json(hit: Hit) -> dict[str, Any]:
    """A memory or a passage, in one shape: ``type`` says which; a passage has no id,
    sector or kind, and has a speaker and its context; both have provenance, and a memory
    quotes the turns that say it when they were found too (``context``)."""
    return {
        "type": hit.type,
        "memory_id": str(hit.memory_id) if hit.memory_id is not None else None,
        "content": hit.content,
        "sector": hit.sector,
        "kind": hit.kind,
        "score": hit.score,
        "score_breakdown": hit.breakdown,
        "via": list(hit.via),
        "observed_at": hit.observed_at.isoformat(),
        "last_seen_at": hit.last_seen_at.isoformat(),
        "reinforcement_count": hit.reinforcement_count,
        "provenance": hit.provenance,
        "speaker": hit.speaker,
        "turn": hit.turn,
        "said_at": hit.observed_at.isoformat() if hit.type == "passage" else None,
        "context": hit.context,
    }


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


def create_app(settings: Settings, *, embedder: Embedder | None = None) -> FastAPI:
    """The query ASGI app (started by `memstream run` / `memstream query`, or any ASGI
    server)."""
    service = QueryService(settings, embedder)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="memstream query",
        version="1",
        lifespan=lifespan,
        description="Memory search, call-start briefings and agent tools over memstream's "
        "read models.",
    )
    app.add_middleware(Observe, requests=REQUESTS, seconds=REQUEST_SECONDS)
    app.state.service = service

    def openapi() -> dict[str, Any]:
        # Every /v1 route takes a tenant API key as a bearer token.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "msk_... API key"}
            }
            for path, operations in schema["paths"].items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> JSONResponse:
        REJECTED.labels(getattr(request.scope.get("route"), "path", "unmatched"), exc.code).inc()
        if exc.status == 401:  # wherever it was raised (services/ratelimit.py)
            service.auth_failures.failed(request)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    refuse_framework_errors(app, ApiError)

    add_unavailable_handler(app, REJECTED)

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
                "results": [
                    {
                        "conversation_id": h.conversation_id,
                        "seq": h.turn,
                        "speaker": h.speaker,
                        "text": h.content,
                        "said_at": h.observed_at.isoformat(),
                        "score": h.score,
                        "context": h.context,
                    }
                    for h in hits
                ],
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
                    user=user if isinstance(user, str) else None,
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
        user, key_id = params.get("user"), params.get("key_id")
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

    add_resource_routes(app, service)

    add_health_routes(app, settings, service.pool, lambda: service._log, live_status="live")

    return app
