"""The live read model: what the live processor prefetched for each call in progress
(``live.prefetches``, infra/migrations/0010_live.sql), its writer's and readers' SQL, and
the words a topic and a question are matched on.

The live processor (services/live) writes a row per topic a call opens; the query
service reads them: an agent's memory-search tool answers from them when the question is
about a prefetched topic (:func:`covering`), and ``GET /v1/calls/{id}/context`` streams
them. A row lives as long as its call (:func:`delete_call`, a grace period after the end)
or its subject (:func:`delete_subject`, on erasure).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection

from schemas import ContextPrefetched, PrefetchedHit

__all__ = [
    "STOP_WORDS",
    "Prefetch",
    "call_prefetches",
    "content_terms",
    "covering",
    "delete_call",
    "delete_subject",
    "prefetch_counts",
    "record_prefetch",
]

_WORD = re.compile(r"[a-z0-9][a-z0-9']*")
# Function words and conversational filler: what says nothing about a topic.
_STOP_TEXT = """
a about above after again against all also am an and any are aren't as at be because
been before being below between both but by can can't cannot could couldn't did
didn't do does doesn't doing don't down during each few for from further get got had
hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's
its itself just let's like me more most mustn't my myself no nor not now of off on
once only or other ought our ours ourselves out over own please really right same
shan't she she'd she'll she's should shouldn't so some sure such than thank thanks
that that's the their theirs them themselves then there there's these they they'd
they'll they're they've this those through to too um uh under until up us very want
was wasn't we we'd we'll we're we've well were weren't what what's when when's where
where's which while who who's whom why why's will with won't would wouldn't yeah yes
yep you you'd you'll you're you've your yours yourself yourselves okay ok hi hello
hey bye goodbye great good fine know think mean actually maybe need one two also
able going gonna kind sort thing things something anything everything call calling
tell said say remember recall caller user customer
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def content_terms(text: str) -> list[str]:
    """The words of `text` that say what it is about: lower-cased, without stop words and
    one-letter words, a plural's final s dropped; in order, without repeats."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        word = word.removesuffix("'s")
        if len(word) < 2 or word in STOP_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        seen.setdefault(word, None)
    return list(seen)


@dataclass(frozen=True)
class Prefetch:
    """One topic's prefetch for a call."""

    event_id: uuid.UUID
    seq: int
    topic: str
    hits: tuple[PrefetchedHit, ...]
    created_at: datetime


_RECORD_SQL = """
INSERT INTO live.prefetches (tenant, conversation_id, event_id, subject, seq, topic, hits)
VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (tenant, conversation_id, event_id) DO NOTHING
"""
_READ_SQL = """
SELECT event_id, seq, topic, hits, created_at FROM live.prefetches
 WHERE tenant = %s AND conversation_id = %s AND subject = %s
 ORDER BY seq, created_at
"""


async def record_prefetch(conn: AsyncConnection[Any], event: ContextPrefetched, seq: int) -> None:
    """Keep a prefetch for the call's readers (idempotent: a prefetch's event id is
    derived from its turn's, so a redelivered turn writes nothing new)."""
    await conn.execute(
        _RECORD_SQL,
        [
            event.tenant,
            event.data.conversation_id,
            event.id,
            event.subject,
            seq,
            event.data.topic,
            orjson.dumps([hit.model_dump(mode="json") for hit in event.data.hits]).decode(),
        ],
    )


async def call_prefetches(
    conn: AsyncConnection[Any], tenant: str, conversation_id: str, subject: str
) -> list[Prefetch]:
    """The call's prefetches, in the order its topics came; only those of `subject` (an
    agent's call sees only its own caller's)."""
    cursor = await conn.execute(_READ_SQL, [tenant, conversation_id, subject])
    return [
        Prefetch(
            event_id=row[0],
            seq=row[1],
            topic=row[2],
            hits=tuple(PrefetchedHit.model_validate(hit) for hit in row[3]),
            created_at=row[4],
        )
        for row in await cursor.fetchall()
    ]


def covering(prefetches: Sequence[Prefetch], question: str) -> list[PrefetchedHit]:
    """The prefetched hits that answer `question`, best first; empty when the question
    is not about a prefetched topic (then a normal search answers it).

    A hit answers when it shares a content word with the question. Hits of a prefetch
    whose topic shares one come first (the question is about that topic), then by how
    many of the question's words they hold, then by their search score. A question
    without content words ("what do you know?") is covered by nothing here.
    """
    asked = set(content_terms(question))
    if not asked:
        return []
    ranked: dict[str, tuple[tuple[int, int, float], PrefetchedHit]] = {}
    for prefetch in prefetches:
        on_topic = int(bool(asked & set(content_terms(prefetch.topic))))
        for hit in prefetch.hits:
            shared = len(asked & set(content_terms(hit.text)))
            if not shared:
                continue
            rank = (on_topic, shared, hit.score)
            if hit.id not in ranked or ranked[hit.id][0] < rank:
                ranked[hit.id] = (rank, hit)
    return [hit for _, hit in sorted(ranked.values(), key=lambda r: r[0], reverse=True)]


async def delete_call(conn: AsyncConnection[Any], tenant: str, conversation_id: str) -> int:
    cursor = await conn.execute(
        "DELETE FROM live.prefetches WHERE tenant = %s AND conversation_id = %s",
        [tenant, conversation_id],
    )
    return cursor.rowcount


async def delete_subject(conn: AsyncConnection[Any], tenant: str, subject: str) -> int:
    cursor = await conn.execute(
        "DELETE FROM live.prefetches WHERE tenant = %s AND subject = %s", [tenant, subject]
    )
    return cursor.rowcount


async def prefetch_counts(conn: AsyncConnection[Any]) -> tuple[int, int]:
    """How many calls have prefetches, and how many prefetches there are (every tenant)."""
    cursor = await conn.execute(
        "SELECT count(DISTINCT (tenant, conversation_id)), count(*) FROM live.prefetches"
    )
    row = await cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
