"""Search: one user's memories and passages ranked for a query, with the reasons for each rank.

Two kinds of hit answer a question: **memories** (facts extracted from calls, active
only: superseded and retracted ones are never candidates) and **passages** (what was
said: each turn of the caller or the agent with its neighbours as context, from the
conversations read model). Both are ranked together, by two lists fused by weighted
reciprocal rank:

1. **lexical**: Okapi BM25 over the user's memories and passages, computed in
   PostgreSQL from their ``tsvector`` (term frequency from the lexeme positions, document
   frequency and length over this user's documents; a passage's own turn counts fully,
   its context at ``context_weight``). Names, numbers and dates that small embedding
   models blur. ``ts_rank`` is kept as an alternative (``lexical_ranking``) only to be
   measured against: on the recall corpus BM25 wins (docs/benchmarks.md, bench_recall);
2. **dense**: cosine similarity of the query's vector to the memories' and passages'
   vectors of the same model, at least ``min_cosine``;

and, for memories, **graph**: one hop from the best fused memories along the links graph
(cosine >= 0.8 neighbours), ranked by link weight times the seed's fused score.

The fused score, normalised so a document first in both lists has relevance 1, is the
``similarity`` term of the composite score (docs/query.md, "Ranking"):

    memory:  0.6 * relevance + 0.2 * decayed salience + 0.1 * recency + 0.1 * link weight
    passage: 0.6 * relevance + 0.2 * passage_salience + 0.1 * recency

``passage_salience`` is below any extracted memory's salience, so a fact ranks above a
passage that is as relevant. Three rules join the kinds:

- a passage cited by a candidate memory's provenance is **folded** into that memory: the
  best memory citing it ranks at the better of the two scores, every citing memory quotes
  it, and the passage is not listed again;
- a passage whose window (its turn and its neighbours) is cited only by memories that
  were superseded or retracted said something no longer true (or asked for it): its
  relevance is multiplied by ``stale_factor``;
- a memory hit quotes the turn that says it with that turn's neighbours, and a passage
  it already shows is **merged** into it (the turn joins its provenance), as a passage
  already shown by a better passage is merged into that one.

Each :class:`Hit` carries its breakdown, the lists it came from and its provenance in one
shape for both kinds (conversation id and turn indexes).

The SQL is beside the read models it reads, in ``projections/search.py`` (the candidate
lists, the candidates' memories, links and passages, the passages' neighbours); this
module fuses, ranks and merges what those queries return.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection

from projections import search as search_reads
from services.query.answer_types import answer_type, asks_current, holds_answer

__all__ = ["SECTORS", "SOURCES", "Hit", "SearchQuery", "SearchWeights", "search_memories"]

#: Turns quoted by a memory hit at most: the best of the passages folded into it.
QUOTES = 2

SECTORS = ("semantic", "episodic", "procedural", "emotional", "reflective")
#: What a search can draw on.
SOURCES = ("memories", "passages")

Source = Literal["memories", "passages"]
#: A memory by its id, a passage by (conversation id, turn index).
Key = uuid.UUID | tuple[str, int]


@dataclass(frozen=True)
class SearchWeights:
    """How the lists are fused and the composite score weighted (docs/query.md)."""

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
    #: The recency weight, and half-life, for a question about what holds now ("Which
    #: plan is she on now?": services/query/answer_types.py, ``asks_current``), where a
    #: value said later replaces one said before.
    current_recency: float = 0.2
    current_half_life_days: float = 7.0
    #: Recency counted back from the newest candidate rather than from now: of two
    #: answers the later one wins even when the caller last called a year ago.
    relative_recency: bool = True
    #: A passage quoted as context by a better one is merged into it.
    merge_neighbours: bool = True
    #: Relevance gained by a hit that holds the kind of answer the question asks for
    #: (a moment for "when", a number for "how many"...: services/query/answer_types.py).
    answer_type: float = 0.4
    #: Candidates taken from each list (at least; more when the limit is higher).
    depth: int = 50
    #: Below this cosine a vector neighbour is not a candidate: the nearest memory to an
    #: unrelated question is still unrelated (all-MiniLM-L6-v2: unrelated short texts
    #: score under 0.2, related ones 0.4 and more).
    min_cosine: float = 0.2
    #: Best fused candidates whose links are followed.
    seeds: int = 5
    #: BM25's term-frequency saturation and length normalisation.
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    #: What a term in a passage's context counts for, against one in its own turn.
    context_weight: float = 0.5
    #: ``bm25`` or ``ts_rank`` (PostgreSQL's own, kept to be measured against).
    lexical_ranking: Literal["bm25", "ts_rank"] = "bm25"
    #: The salience term of a passage: under every extracted memory's.
    passage_salience: float = 0.3
    #: Relevance kept by a passage whose only memories were superseded or retracted.
    stale_factor: float = 0.5
    #: A folded passage ranks only the best of the memories citing it (the others keep
    #: their own score and still quote it), so one turn does not fill several slots.
    fold_once: bool = True
    #: A memory hit quotes the turn that says it with that turn's neighbours, as a
    #: passage shows its own: its best folded passage, or else its first source turn.
    memory_context: bool = True
    #: A passage whose turn a better memory hit already quotes is merged into that hit
    #: (added to its provenance) and its slot goes to another answer.
    merge_into_memories: bool = True


@dataclass(frozen=True)
class SearchQuery:
    tenant: str
    subject: str
    text: str
    limit: int = 10
    sectors: tuple[str, ...] | None = None
    min_score: float = 0.0
    #: What to draw on; a sector filter applies to memories and leaves passages out.
    sources: tuple[Source, ...] = ("memories", "passages")


@dataclass(frozen=True)
class Hit:
    memory_id: uuid.UUID | None
    """None for a passage."""
    content: str
    """A memory's content, or the passage's own turn as said."""
    sector: str | None
    kind: str | None
    score: float
    breakdown: dict[str, float]
    """relevance, salience, recency, link: the composite's terms before weighting; and
    cosine / lexical when the hit was in those lists."""
    via: tuple[str, ...]
    """The lists it came from: dense, lexical, graph; ``passage`` for a memory that a
    folded passage ranked."""
    observed_at: datetime
    """When it was said: a memory's first call, a passage's moment in its call."""
    last_seen_at: datetime
    reinforcement_count: int
    provenance: list[dict[str, Any]] = field(default_factory=list)
    type: Literal["memory", "passage"] = "memory"
    speaker: str | None = None
    """A passage's speaker: ``caller`` or ``agent``."""
    context: list[dict[str, Any]] = field(default_factory=list)
    """A passage's neighbouring turns, in order: ``seq``, ``speaker``, ``text``. A
    memory's, each with its ``conversation_id`` too: the turn that says it best (the best
    passage folded into it, else its first source turn), that turn's neighbours in
    order, then the other passages folded into it (at most :data:`QUOTES` quotes)."""
    conversation_id: str | None = None
    """A passage's conversation."""
    turn: int | None = None
    """A passage's own turn (``content``); its provenance also lists the neighbours merged
    into it."""


_SPEAKERS = {"user": "caller", "agent": "agent"}


def _key(row: dict[str, Any]) -> Key:
    if row["memory_id"] is not None:
        memory_id: uuid.UUID = row["memory_id"]
        return memory_id
    return (str(row["conversation_id"]), int(row["seq"]))


async def search_memories(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    *,
    vector: Sequence[float],
    model: str,
    now: datetime,
    weights: SearchWeights | None = None,
    passage_stats: bool | None = None,
) -> list[Hit]:
    """The user's memories and passages for ``query.text``, best first (``vector`` is the
    text embedded by ``model``): the two candidate lists one after the other, then
    :func:`rank_candidates`. The query service runs the lists side by side instead.
    `passage_stats`: as for :func:`lexical_candidates`."""
    w = weights or SearchWeights()
    lexical_rows = await lexical_candidates(conn, query, w, passage_stats=passage_stats)
    dense_rows = await dense_candidates(conn, query, vector=vector, model=model, weights=w)
    return await rank_candidates(
        conn, query, lexical_rows, dense_rows, model=model, now=now, weights=w
    )


def _sources(query: SearchQuery) -> tuple[bool, bool]:
    """Whether the search draws on memories, and on passages (a sector filter is about
    memories: passages have no sector)."""
    return "memories" in query.sources, "passages" in query.sources and not query.sectors


def _depth(query: SearchQuery, w: SearchWeights) -> int:
    """Candidates taken from each list: ``depth``, or more when the limit is higher."""
    return max(w.depth, 2 * query.limit)


async def lexical_candidates(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    weights: SearchWeights | None = None,
    *,
    passage_stats: bool | None = None,
) -> list[dict[str, Any]]:
    """The lexical list: the user's documents ranked by BM25 (or ``ts_rank``), best
    first. It needs no vector, so it can run while the question is embedded.
    `passage_stats`: whether ``conversations.passage_stats`` exists (None: ask the
    database); without it every passage of the user is read for their count and length."""
    w = weights or SearchWeights()
    with_memories, with_passages = _sources(query)
    return await search_reads.lexical_candidates(
        conn,
        tenant=query.tenant,
        subject=query.subject,
        text=query.text,
        sectors=query.sectors,
        memories=with_memories,
        passages=with_passages,
        depth=_depth(query, w),
        k1=w.bm25_k1,
        b=w.bm25_b,
        context_weight=w.context_weight,
        ranking=w.lexical_ranking,
        passage_stats=passage_stats,
    )


async def dense_candidates(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    *,
    vector: Sequence[float],
    model: str,
    weights: SearchWeights | None = None,
) -> list[dict[str, Any]]:
    """The dense list: the user's memories' and passages' vectors of ``model`` nearest
    ``vector``, at least ``min_cosine``, nearest first."""
    w = weights or SearchWeights()
    with_memories, with_passages = _sources(query)
    return await search_reads.dense_candidates(
        conn,
        tenant=query.tenant,
        subject=query.subject,
        sectors=query.sectors,
        memories=with_memories,
        passages=with_passages,
        vector=vector,
        model=model,
        depth=_depth(query, w),
        min_cosine=w.min_cosine,
    )


async def rank_candidates(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    lexical_rows: Sequence[dict[str, Any]],
    dense_rows: Sequence[dict[str, Any]],
    *,
    model: str,
    now: datetime,
    weights: SearchWeights | None = None,
) -> list[Hit]:
    """The two lists fused and ranked (the module docstring), with what each hit shows."""
    w = weights or SearchWeights()
    with_memories, with_passages = _sources(query)
    if not (with_memories or with_passages):
        return []
    depth = _depth(query, w)

    # 1. Fuse the two lists by weighted reciprocal rank.
    fused: dict[Key, float] = {}
    lexical: dict[Key, float] = {}
    cosine: dict[Key, float] = {}
    for rank, row in enumerate(lexical_rows, start=1):
        key = _key(row)
        lexical[key] = float(row["lexical"])
        fused[key] = fused.get(key, 0.0) + w.lexical / (w.rrf_k + rank)
    for rank, row in enumerate(dense_rows[:depth], start=1):
        key = _key(row)
        cosine[key] = 1.0 - float(row["distance"])
        fused[key] = fused.get(key, 0.0) + w.dense / (w.rrf_k + rank)

    memory_ids = [k for k in fused if isinstance(k, uuid.UUID)]
    passage_keys = [k for k in fused if isinstance(k, tuple)]
    memories: dict[uuid.UUID, dict[str, Any]] = {}
    if memory_ids:
        rows = await search_reads.memories_by_id(conn, tenant=query.tenant, ids=memory_ids, now=now)
        memories = {row["memory_id"]: row for row in rows}

    # 2. One hop of graph expansion from the best fused memories.
    links: dict[uuid.UUID, float] = {}
    graph: dict[uuid.UUID, float] = {}
    seeds = sorted(memories, key=lambda m: (-fused[m], str(m)))[: w.seeds]
    if seeds:
        linked = await search_reads.linked_memories(
            conn, tenant=query.tenant, seeds=seeds, model=model, sectors=query.sectors, now=now
        )
        for row in linked:
            memory_id = row["memory_id"]
            memories.setdefault(memory_id, row)
            links[memory_id] = max(links.get(memory_id, 0.0), float(row["weight"]))
            reach = float(row["weight"]) * fused[row["seed"]]
            graph[memory_id] = max(graph.get(memory_id, 0.0), reach)
        ranked = sorted(graph, key=lambda m: (-graph[m], str(m)))
        for rank, memory_id in enumerate(ranked, start=1):
            fused[memory_id] = fused.get(memory_id, 0.0) + w.graph / (w.rrf_k + rank)

    passages: dict[tuple[str, int], dict[str, Any]] = {}
    if passage_keys:
        rows = await search_reads.candidate_passages(
            conn, tenant=query.tenant, subject=query.subject, keys=passage_keys
        )
        passages = {(r["conversation_id"], r["seq"]): r for r in rows}

    # 3. The composite score of each candidate. A document first in both lists has
    # relevance 1. Recency is measured back from the newest candidate (``relative``), so
    # of two answers the later one wins even when the caller last called a year ago;
    # or back from now.
    best = (w.dense + w.lexical) / (w.rrf_k + 1)
    anchor = now
    if w.relative_recency:
        moments = [m["last_seen_at"] for m in memories.values()]
        moments += [p["spoken_at"] for p in passages.values()]
        anchor = min(now, max(moments, default=now))

    current = asks_current(query.text)
    recency_weight = w.current_recency if current else w.recency
    half_life = w.current_half_life_days if current else w.recency_half_life_days

    def recency_of(at: datetime) -> float:
        days = max(0.0, (anchor - at).total_seconds() / 86400.0)
        return math.exp(-math.log(2) * days / half_life)

    def breakdown(
        key: Key, relevance: float, salience: float, recency: float, link: float
    ) -> dict[str, float]:
        terms = {"relevance": relevance, "salience": salience, "recency": recency, "link": link}
        if key in cosine:
            terms["cosine"] = cosine[key]
        if key in lexical:
            terms["lexical"] = lexical[key]
        return {name: round(value, 6) for name, value in terms.items()}

    def via(key: Key) -> tuple[str, ...]:
        return tuple(
            name
            for name, present in (
                ("dense", key in cosine),
                ("lexical", key in lexical),
                ("graph", key in graph),
            )
            if present
        )

    wanted = answer_type(query.text) if w.answer_type else None

    def typed(relevance: float, text: str) -> float:
        if wanted is not None and holds_answer(wanted, text, query.text):
            return min(1.0, relevance * (1.0 + w.answer_type))
        return relevance

    def composite(relevance: float, salience: float, recency: float, link: float) -> float:
        return (
            w.similarity * relevance
            + w.salience * salience
            + recency_weight * recency
            + w.link * link
        )

    hits: dict[Key, Hit] = {}
    for memory_id, row in memories.items():
        relevance = typed(min(1.0, fused[memory_id] / best), row["content"])
        salience = float(row["salience"])
        recency = recency_of(row["last_seen_at"])
        link = links.get(memory_id, 0.0)
        score = composite(relevance, salience, recency, link)
        hits[memory_id] = Hit(
            memory_id=memory_id,
            content=row["content"],
            sector=row["sector"],
            kind=row["kind"],
            score=round(score, 6),
            breakdown=breakdown(memory_id, relevance, salience, recency, link),
            via=via(memory_id),
            observed_at=row["observed_at"],
            last_seen_at=row["last_seen_at"],
            reinforcement_count=row["reinforcement_count"],
            provenance=list(row["provenance"]),
        )
    quotes: dict[uuid.UUID, list[tuple[float, dict[str, Any]]]] = {}
    for key, row in passages.items():
        relevance = typed(min(1.0, fused[key] / best), row["text"])
        citing = [m for m in row["active"] or () if m in hits]
        if row["stale"]:
            relevance *= w.stale_factor
        recency = recency_of(row["spoken_at"])
        score = round(composite(relevance, w.passage_salience, recency, 0.0), 6)
        if citing:
            # Folded: the memory that says it ranks where the passage would have, and
            # quotes it (the caller's own words carry what a short fact leaves out).
            quote = {
                "conversation_id": key[0],
                "seq": key[1],
                "speaker": _SPEAKERS.get(row["role"], row["role"]),
                "text": row["text"],
            }
            for memory_id in citing:
                quotes.setdefault(memory_id, []).append((score, quote))
            ranked_by = (
                [max(citing, key=lambda m: (hits[m].score, str(m)))] if w.fold_once else citing
            )
            for memory_id in ranked_by:
                memory = hits[memory_id]
                if score > memory.score:
                    hits[memory_id] = replace(memory, score=score, via=(*memory.via, "passage"))
            continue
        hits[key] = Hit(
            memory_id=None,
            content=row["text"],
            sector=None,
            kind=None,
            score=score,
            breakdown=breakdown(key, relevance, w.passage_salience, recency, 0.0),
            via=via(key),
            observed_at=row["spoken_at"],
            last_seen_at=row["spoken_at"],
            reinforcement_count=0,
            provenance=[{"conversation_id": key[0], "turns": [key[1]]}],
            type="passage",
            conversation_id=key[0],
            turn=key[1],
            speaker=_SPEAKERS.get(row["role"], row["role"]),
        )

    for memory_id, found in quotes.items():
        found.sort(key=lambda q: (-q[0], q[1]["conversation_id"], q[1]["seq"]))
        hits[memory_id] = replace(hits[memory_id], context=[q for _, q in found[:QUOTES]])
    ranked_hits = sorted(
        (h for h in hits.values() if h.score >= query.min_score),
        key=_rank_order,
    )
    if not w.merge_neighbours:
        return await _with_context(conn, query.tenant, ranked_hits[: query.limit], w.memory_context)
    # Enough candidates that merging neighbours still leaves ``limit`` hits.
    candidates = await _with_context(
        conn, query.tenant, ranked_hits[: 3 * query.limit], w.memory_context
    )
    return _merge_neighbours(candidates, into_memories=w.merge_into_memories)[: query.limit]


def _merge_neighbours(hits: list[Hit], *, into_memories: bool) -> list[Hit]:
    """Each passage that a better hit already shows (a passage's context, or with
    `into_memories` a memory's quotes) is merged into it: the better one cites both
    turns, and the slot goes to another answer."""
    merged: list[Hit] = []
    quoted: dict[tuple[str, int], int] = {}  # a turn shown by a kept passage -> its index
    for hit in hits:
        if hit.type == "memory" and into_memories:
            for q in hit.context:
                quoted.setdefault((q["conversation_id"], q["seq"]), len(merged))
        if hit.type == "passage":
            conversation, seq = _passage(hit)
            holder = quoted.get((conversation, seq))
            if holder is not None and merged[holder].type == "memory":
                kept = merged[holder]
                cited = [*kept.provenance, {"conversation_id": conversation, "turns": [seq]}]
                merged[holder] = replace(kept, provenance=cited)
                continue
            if holder is not None:
                kept = merged[holder]
                turns = sorted({*kept.provenance[0]["turns"], seq})
                cited = [{"conversation_id": conversation, "turns": turns}]
                merged[holder] = replace(kept, provenance=cited)
                continue
            for turn in (seq, *(c["seq"] for c in hit.context)):
                quoted.setdefault((conversation, turn), len(merged))
        merged.append(hit)
    return merged


def _rank_order(hit: Hit) -> tuple[float, str, str, int]:
    """Best first; ties: memories before passages, then a stable order."""
    if hit.type == "memory":
        return (-hit.score, "memory", str(hit.memory_id), 0)
    return (-hit.score, "passage", *_passage(hit))


def _passage(hit: Hit) -> tuple[str, int]:
    """A passage hit's conversation and own turn."""
    if hit.conversation_id is None or hit.turn is None:
        raise ValueError("not a passage")
    return hit.conversation_id, hit.turn


def _sourced(hit: Hit) -> Hit:
    """A memory hit with a placeholder quote of its first source turn (text filled in
    by ``_quoting``)."""
    for cited in hit.provenance:
        if cited.get("turns"):
            quote = {"conversation_id": cited["conversation_id"], "seq": cited["turns"][0]}
            return replace(hit, context=[quote])
    return hit


async def _with_context(
    conn: AsyncConnection[Any], tenant: str, hits: list[Hit], memories: bool
) -> list[Hit]:
    """``hits`` with each passage's neighbouring turns and, with ``memories``, each
    memory's best quote (else its first source turn) with that turn's neighbours."""
    wanted = [_passage(h) for h in hits if h.type == "passage"]
    if memories:
        hits = [_sourced(h) if h.type == "memory" and not h.context else h for h in hits]
        wanted += [
            (h.context[0]["conversation_id"], h.context[0]["seq"])
            for h in hits
            if h.type == "memory" and h.context
        ]
    if not wanted:
        return hits
    rows = await search_reads.passage_neighbours(conn, tenant=tenant, keys=wanted)
    context: dict[tuple[str, int], list[dict[str, Any]]] = {}
    own: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        if row["seq"] == row["around"]:
            own[(row["conversation_id"], row["seq"])] = row
            continue
        context.setdefault((row["conversation_id"], row["around"]), []).append(
            {
                "seq": row["seq"],
                "speaker": _SPEAKERS.get(row["role"], row["role"]),
                "text": row["text"],
            }
        )
    if memories:
        hits = [_quoting(h, context, own) if h.type == "memory" and h.context else h for h in hits]
    return [
        replace(h, context=context.get(_passage(h), [])) if h.type == "passage" else h for h in hits
    ]


def _quoting(
    hit: Hit,
    context: dict[tuple[str, int], list[dict[str, Any]]],
    own: dict[tuple[str, int], dict[str, Any]],
) -> Hit:
    """A memory hit's context: its best quote first, then that turn's neighbours in
    order, then its other quotes."""
    best = hit.context[0]
    conversation = best["conversation_id"]
    if "text" not in best:  # a source turn, not a candidate: its text is read here
        row = own.get((conversation, best["seq"]))
        if row is None:
            return replace(hit, context=[])
        best = {
            "conversation_id": conversation,
            "seq": row["seq"],
            "speaker": _SPEAKERS.get(row["role"], row["role"]),
            "text": row["text"],
        }
    others = hit.context[1:]
    shown = {(q["conversation_id"], q["seq"]) for q in others}
    near = [
        {"conversation_id": conversation, **turn}
        for turn in context.get((conversation, best["seq"]), [])
        if (conversation, turn["seq"]) not in shown
    ]
    return replace(hit, context=[best, *near, *others])
