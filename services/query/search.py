"""Memory search: one user's memories ranked for a query, with the reasons for each rank.

Three ranked lists of the user's *active* memories (superseded and retracted ones are
never candidates), fused by weighted reciprocal rank:

1. **dense**: cosine similarity of the query's vector to the memories' vectors of the
   same model, at least ``min_cosine`` (pgvector; the planner uses the model's HNSW
   index or, for one user's few thousand vectors, the exact scan through
   ``embeddings_by_subject``);
2. **lexical**: PostgreSQL full text over the memory and the day it was said, any query
   term matching (``ts_rank``): names, numbers and dates that small embedding models
   blur (DESIGN.md "Providers" measured lexical beating dense on long conversations);
3. **graph**: one hop from the best fused candidates along the links graph (cosine
   >= 0.8 neighbours), ranked by link weight times the seed's fused score.

The fused score, normalised so a memory first in both the dense and lexical lists has
relevance 1, is then the ``similarity`` term of DESIGN.md's composite score:

    score = 0.6 * relevance + 0.2 * decayed salience + 0.1 * recency + 0.1 * link weight

with every weight in :class:`SearchWeights`. Each :class:`Hit` carries its breakdown,
the lists it came from and its provenance.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from projections.memories.queries import DECAYED_SALIENCE, REINFORCEMENT_BOOST
from projections.text_search import ANY_TERM_QUERY

__all__ = ["SECTORS", "Hit", "SearchQuery", "SearchWeights", "search_memories"]

SECTORS = ("semantic", "episodic", "procedural", "emotional", "reflective")


@dataclass(frozen=True)
class SearchWeights:
    """How the lists are fused and the composite score weighted (DESIGN.md defaults)."""

    similarity: float = 0.6
    salience: float = 0.2
    recency: float = 0.1
    link: float = 0.1
    # Reciprocal-rank fusion: weight of each list, and k (smaller k separates the first
    # ranks more). Lexical first: see the module docstring.
    lexical: float = 1.0
    dense: float = 0.7
    graph: float = 0.3
    rrf_k: int = 10
    #: Days after which a memory's recency has halved.
    recency_half_life_days: float = 30.0
    #: Candidates taken from each list (at least; more when the limit is higher).
    depth: int = 50
    #: Below this cosine a vector neighbour is not a candidate: the nearest memory to an
    #: unrelated question is still unrelated (all-MiniLM-L6-v2: unrelated short texts
    #: score under 0.2, related ones 0.4 and more).
    min_cosine: float = 0.2
    #: Best fused candidates whose links are followed.
    seeds: int = 5


@dataclass(frozen=True)
class SearchQuery:
    tenant: str
    subject: str
    text: str
    limit: int = 10
    sectors: tuple[str, ...] | None = None
    min_score: float = 0.0


@dataclass(frozen=True)
class Hit:
    memory_id: uuid.UUID
    content: str
    sector: str
    kind: str | None
    score: float
    breakdown: dict[str, float]
    """relevance, salience, recency, link: the composite's terms before weighting; and
    cosine / lexical when the memory was in those lists."""
    via: tuple[str, ...]
    """The lists it came from: dense, lexical, graph."""
    observed_at: datetime
    last_seen_at: datetime
    reinforcement_count: int
    provenance: list[dict[str, Any]] = field(default_factory=list)


# The dense and lexical lists in one round trip. {dimension} and {model} are literals so
# the model's partial HNSW index (embeddings projection) can serve the ORDER BY.
_CANDIDATES_SQL = """
WITH dense AS (
    SELECT e.memory_id,
           1 - (e.embedding::vector({dimension}) <=> %(vector)s::vector({dimension})) AS cosine,
           row_number() OVER (ORDER BY e.embedding::vector({dimension})
                                       <=> %(vector)s::vector({dimension}), e.memory_id) AS rank
      FROM embeddings.embeddings e
      JOIN memories.memories m ON m.tenant = e.tenant AND m.memory_id = e.memory_id
     WHERE e.tenant = %(tenant)s AND e.subject = %(subject)s AND e.model = {model}
       AND (e.embedding::vector({dimension}) <=> %(vector)s::vector({dimension}))
           <= %(max_distance)s
       AND m.state = 'active' AND m.content IS NOT NULL
       AND (%(sectors)s::text[] IS NULL OR m.sector = ANY(%(sectors)s::text[]))
     ORDER BY e.embedding::vector({dimension}) <=> %(vector)s::vector({dimension}), e.memory_id
     LIMIT %(depth)s
),
terms AS (SELECT {any_term} AS q),
lexical AS (
    SELECT m.memory_id, ts_rank(m.search, terms.q, 1) AS lexical,
           row_number() OVER (ORDER BY ts_rank(m.search, terms.q, 1) DESC, m.memory_id) AS rank
      FROM memories.memories m, terms
     WHERE m.tenant = %(tenant)s AND m.subject = %(subject)s
       AND m.state = 'active' AND m.content IS NOT NULL AND m.search @@ terms.q
       AND (%(sectors)s::text[] IS NULL OR m.sector = ANY(%(sectors)s::text[]))
     ORDER BY lexical DESC, m.memory_id
     LIMIT %(depth)s
)
SELECT m.memory_id, m.content, m.sector, m.kind, m.observed_at, m.last_seen_at,
       m.reinforcement_count, m.provenance, {decayed} AS salience,
       d.cosine, d.rank AS dense_rank, l.lexical, l.rank AS lexical_rank
  FROM (SELECT memory_id FROM dense UNION SELECT memory_id FROM lexical) c
  JOIN memories.memories m ON m.tenant = %(tenant)s AND m.memory_id = c.memory_id
  LEFT JOIN dense d ON d.memory_id = c.memory_id
  LEFT JOIN lexical l ON l.memory_id = c.memory_id
"""

# One hop from the seeds along the links of the same model, to active memories only.
_NEIGHBOURS_SQL = """
SELECT l.memory_id AS seed, l.weight,
       m.memory_id, m.content, m.sector, m.kind, m.observed_at, m.last_seen_at,
       m.reinforcement_count, m.provenance, {decayed} AS salience
  FROM embeddings.links l
  JOIN memories.memories m ON m.tenant = l.tenant AND m.memory_id = l.linked_id
 WHERE l.tenant = %(tenant)s AND l.model = {model} AND l.memory_id = ANY(%(seeds)s)
   AND m.state = 'active' AND m.content IS NOT NULL
   AND (%(sectors)s::text[] IS NULL OR m.sector = ANY(%(sectors)s::text[]))
"""


async def search_memories(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    *,
    vector: Sequence[float],
    model: str,
    now: datetime,
    weights: SearchWeights | None = None,
) -> list[Hit]:
    """The user's memories for ``query.text``, best first (``vector`` is the text embedded
    by ``model``)."""
    w = weights or SearchWeights()
    params: dict[str, Any] = {
        "tenant": query.tenant,
        "subject": query.subject,
        "text": query.text,
        "vector": "[" + ",".join(repr(float(x)) for x in vector) + "]",
        "sectors": list(query.sectors) if query.sectors else None,
        "depth": max(w.depth, 2 * query.limit),
        "max_distance": 1.0 - w.min_cosine,
        "now": now,
        "boost": REINFORCEMENT_BOOST,
    }
    literals = {
        "dimension": sql.Literal(len(vector)),
        "model": sql.Literal(model),
        "decayed": sql.SQL(DECAYED_SALIENCE),
        "any_term": sql.SQL(ANY_TERM_QUERY),
    }
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(sql.SQL(_CANDIDATES_SQL).format(**literals), params)
    rows = {row["memory_id"]: row for row in await cursor.fetchall()}

    fused: dict[uuid.UUID, float] = {}
    for memory_id, row in rows.items():
        score = 0.0
        if row["dense_rank"] is not None:
            score += w.dense / (w.rrf_k + row["dense_rank"])
        if row["lexical_rank"] is not None:
            score += w.lexical / (w.rrf_k + row["lexical_rank"])
        fused[memory_id] = score

    # One hop of graph expansion from the best fused candidates.
    seeds = sorted(fused, key=lambda m: (-fused[m], str(m)))[: w.seeds]
    links: dict[uuid.UUID, float] = {}
    graph_scores: dict[uuid.UUID, float] = {}
    if seeds:
        params["seeds"] = seeds
        await cursor.execute(sql.SQL(_NEIGHBOURS_SQL).format(**literals), params)
        for row in await cursor.fetchall():
            memory_id = row["memory_id"]
            rows.setdefault(memory_id, {**row, "cosine": None, "dense_rank": None,
                                        "lexical": None, "lexical_rank": None})  # fmt: skip
            links[memory_id] = max(links.get(memory_id, 0.0), float(row["weight"]))
            reach = float(row["weight"]) * fused[row["seed"]]
            graph_scores[memory_id] = max(graph_scores.get(memory_id, 0.0), reach)
        ranked = sorted(graph_scores, key=lambda m: (-graph_scores[m], str(m)))
        for rank, memory_id in enumerate(ranked, start=1):
            fused[memory_id] = fused.get(memory_id, 0.0) + w.graph / (w.rrf_k + rank)

    # A memory first in both the dense and the lexical list has relevance 1.
    best = (w.dense + w.lexical) / (w.rrf_k + 1)
    hits = []
    for memory_id, row in rows.items():
        relevance = min(1.0, fused[memory_id] / best)
        days = max(0.0, (now - row["last_seen_at"]).total_seconds() / 86400.0)
        recency = math.exp(-math.log(2) * days / w.recency_half_life_days)
        salience = float(row["salience"])
        link = links.get(memory_id, 0.0)
        score = round(
            w.similarity * relevance + w.salience * salience + w.recency * recency + w.link * link,
            6,
        )
        if score < query.min_score:
            continue
        breakdown = {
            "relevance": round(relevance, 6),
            "salience": round(salience, 6),
            "recency": round(recency, 6),
            "link": round(link, 6),
        }
        if row["cosine"] is not None:
            breakdown["cosine"] = round(float(row["cosine"]), 6)
        if row["lexical"] is not None:
            breakdown["lexical"] = round(float(row["lexical"]), 6)
        via = tuple(
            name
            for name, present in (
                ("dense", row["dense_rank"] is not None),
                ("lexical", row["lexical_rank"] is not None),
                ("graph", memory_id in graph_scores),
            )
            if present
        )
        hits.append(
            Hit(
                memory_id=memory_id,
                content=row["content"],
                sector=row["sector"],
                kind=row["kind"],
                score=score,
                breakdown=breakdown,
                via=via,
                observed_at=row["observed_at"],
                last_seen_at=row["last_seen_at"],
                reinforcement_count=row["reinforcement_count"],
                provenance=list(row["provenance"]),
            )
        )
    hits.sort(key=lambda h: (-h.score, str(h.memory_id)))
    return hits[: query.limit]
