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

The code: this module assembles the app (middleware, refusals, the OpenAPI document);
the routes are in services/query/routes.py and services/query/resources.py, what they
share (the query embedder, caches, rate limits, the search, briefing and context) in
services/query/service.py, on the base both services share (the pool, the lifespan, keys,
tenants, refusals, health: services/service_base.py), and the JSON they answer in
services/query/serialise.py. The reads of each read model are beside its projection
(``projections/<name>/queries.py``; erasure's and export's counts over every read model
in projections/personal_data.py), but the search's, which fuses three read models
(services/query/search.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from projections.embeddings.processor import Embedder
from services.query.metrics import REJECTED, REQUEST_SECONDS, REQUESTS
from services.query.resources import add_resource_routes
from services.query.routes import add_query_routes
from services.query.serialise import hit_json
from services.query.service import QueryService
from services.settings import Settings

# Imported from here by other modules and tests: the service and the search's JSON.
__all__ = ["QueryService", "create_app", "hit_json"]


def create_app(settings: Settings, *, embedder: Embedder | None = None) -> FastAPI:
    """The query ASGI app (started by `memstream run` / `memstream query`, or any ASGI
    server)."""
    service = QueryService(settings, embedder)

    app = FastAPI(
        title="memstream query",
        version="1",
        lifespan=service.lifespan,
        description="Memory search, call-start briefings and agent tools over memstream's "
        "read models.",
    )
    service.install(app, requests=REQUESTS, seconds=REQUEST_SECONDS, rejected=REJECTED)

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

    add_query_routes(app, service)

    add_resource_routes(app, service)

    service.add_health_routes(app, live_status="live")

    return app
