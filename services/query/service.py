"""The query service's state and orchestration: :class:`QueryService` (the database pool,
the query embedder and its fallback, caches, rate limits, the audit trail, and the search,
briefing, context and prefetch reads the routes share) and the embedder factory.

The routes are in services/query/routes.py and services/query/resources.py, the JSON
shapes in services/query/serialise.py; services/query/app.py assembles the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any

from fastapi import Request

from projections import PROJECTIONS
from projections.conversations.queries import get_conversation
from projections.embeddings.models import MODEL_NAME, is_local
from projections.embeddings.processor import Embedder
from projections.live import Prefetch, call_prefetches
from projections.memories import top_memories
from projections.providers.exceptions import ProviderUnavailable
from projections.providers.resilience import fell_back
from schemas import Event, utc_now
from services import tenants
from services.briefing import Briefing, load_briefing
from services.errors import ApiError
from services.expiring import Expiring
from services.logs import call_fields
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
from services.query.metrics import RATE_LIMITED, SEARCH_SECONDS
from services.query.requests import ContextRequest
from services.query.search import (
    Hit,
    SearchQuery,
    SearchWeights,
    dense_candidates,
    lexical_candidates,
    rank_candidates,
)
from services.ratelimit import RateLimiter
from services.service_base import ServiceBase
from services.settings import Settings
from streams import BrokerUnavailable, EventLog, versions
from streams.audit import READ, AuditTrail, EntryType
from streams.exceptions import AuditUnavailable
from streams.topics import ensure_topics

__all__ = ["QueryService"]

# The query app's logger, wherever its lines are written from (docs/operations.md lists
# them under this name).
logger = logging.getLogger("services.query.app")


def _embedders(
    model: str | None, settings: Settings, threads: int | None = None
) -> tuple[Embedder, Embedder | None]:
    """The query embedder for `model` (None or empty: the default local model; a local
    model's name: that model) and its fallback; `threads`: the local model's sessions
    (None: one per core, at most ``local.MAX_SESSIONS``)."""
    from projections.embeddings.local import LocalEmbedder

    if is_local(model):
        return LocalEmbedder(model=model or MODEL_NAME, threads=threads), None
    from projections.embeddings.openai_embedder import OpenAIEmbedder

    remote = OpenAIEmbedder.from_settings(settings.replace(embedding_model=model))
    return remote, LocalEmbedder(threads=threads)


class QueryService(ServiceBase):
    """What the routes share: the database pool, the query embedder, caches, rate limits (the
    pool, API keys, tenants and read-model checks: services/service_base.py)."""

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
        ``embed_threads``: the local model's sessions of one thread each (None: one per
        core; a question alone runs on one of them, and requests at once on several; the
        live processor takes 1)."""
        super().__init__(settings, pool_min_size=2)
        self._embed_threads = embed_threads
        # Given embedders are used as they are; otherwise the model follows the live
        # embedder version (`memstream reprocess embeddings --model ... --swap`).
        self._follow_embedder = embedder is None
        self._embedder_model: Expiring[str, str | None] = Expiring(settings.cache_ttl_s)
        self._model: str | None = settings.embedding_model
        if embedder is None:
            embedder, fallback = _embedders(settings.embedding_model, settings, embed_threads)
        self.embedder = embedder
        self.fallback = fallback
        self.limiter = RateLimiter(
            settings.query_rate_limit, settings.query_rate_burst, refused=RATE_LIMITED
        )
        self.waits = WaitSlots(settings.query_max_waits)
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

    def producer(self) -> EventLog | None:
        return self._log

    async def start(self) -> None:
        await super().start()
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
        await super().stop()

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

    def unknown_tenant(self, tenant: str, *, well_formed: bool) -> ApiError:
        # The tenant is an API key's: the key outlived its tenant.
        return ApiError(401, "bad_credentials", "the API key's tenant no longer exists")

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
        passage_stats = "passages" in query.sources and await self.read_model_exists(
            "conversations.passage_stats"
        )
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
            lexical = asyncio.create_task(
                lexical_candidates(conn, query, weights, passage_stats=passage_stats)
            )
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
