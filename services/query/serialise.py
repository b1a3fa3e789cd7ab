"""The query API's JSON shapes: what each route answers, from the service's results and the
read models' rows, in one place (the routes in services/query/routes.py and
services/query/resources.py call these), and Server-Sent Events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from projections.live import Prefetch
from schemas import PrefetchedHit
from services.briefing import Briefing
from services.query.context import Context
from services.query.search import Hit

__all__ = [
    "briefing_json",
    "context_json",
    "conversation_json",
    "hit_json",
    "iso",
    "listed_user_json",
    "memory_json",
    "prefetch_json",
    "prefetched_hit_json",
    "sse",
    "transcript_hit_json",
    "user_json",
]


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


def transcript_hit_json(hit: Hit) -> dict[str, Any]:
    """A passage as ``POST /v1/transcripts/search`` lists it: one turn."""
    return {
        "conversation_id": hit.conversation_id,
        "seq": hit.turn,
        "speaker": hit.speaker,
        "text": hit.content,
        "said_at": hit.observed_at.isoformat(),
        "score": hit.score,
        "context": hit.context,
    }


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def memory_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "memory_id": str(row["memory_id"]),
        "content": row["content"],
        "sector": row["sector"],
        "kind": row["kind"],
        "salience": row["salience"],
        "state": row["state"],
        "superseded_by": str(row["superseded_by"]) if row["superseded_by"] else None,
        "origin": row["origin"],
        "extractor": row["extractor"],
        "reinforcement_count": row["reinforcement_count"],
        "observed_at": iso(row["observed_at"]),
        "last_seen_at": iso(row["last_seen_at"]),
        "provenance": row["provenance"],
    }


def conversation_json(row: dict[str, Any]) -> dict[str, Any]:
    body = {
        "conversation_id": row["conversation_id"],
        "platform": row["platform"],
        "status": row["status"],
        "channel": row["channel"],
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
        "duration_secs": row["duration_secs"],
        "turn_count": row["turn_count"],
        "title": row["title"],
        "summary": row["summary"],
    }
    if "turns" in row:
        body["turns"] = [
            {"seq": t["seq"], "role": t["role"], "text": t["text"], "offset_ms": t["offset_ms"]}
            for t in row["turns"]
        ]
    return body


def listed_user_json(row: dict[str, Any]) -> dict[str, Any]:
    """A user as ``GET /v1/users`` lists them."""
    return {
        "user": row["subject"].partition("/")[2],
        "display_name": row["display_name"],
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
        "conversation_count": row["conversation_count"],
    }


def user_json(user: str, row: dict[str, Any]) -> dict[str, Any]:
    """A user as ``GET /v1/users/{user}`` answers it."""
    return {
        "user": user,
        "display_name": row["display_name"],
        "phone": row["phone"],
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
        "conversation_count": row["conversation_count"],
    }
