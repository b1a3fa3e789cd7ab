"""Memory search over the real read models: a small golden corpus, embedded by the local
model through the log, ranked by the hybrid search."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.query.search import Hit, SearchQuery, search_memories
from tests.helpers import BASE_TIME
from tests.integration.query.corpus import (
    EMBEDDER,
    SUBJECT,
    TENANT,
)

NOW = BASE_TIME + timedelta(days=30)
# A word of each memory of the caller (Leeds: superseded).
MANY = "Biscuit Leeds Manchester penicillin running Italian dentist surgery"


async def search(db: Any, text: str, **options: Any) -> list[Hit]:
    """Memories only: these tests are about ranking memories (test_passages.py: both)."""
    options.setdefault("sources", ("memories",))
    query = SearchQuery(tenant=TENANT, subject=options.pop("subject", SUBJECT), text=text,
                        **options)  # fmt: skip
    [vector] = EMBEDDER.embed([text])
    return await search_memories(db, query, vector=vector, model=EMBEDDER.name, now=NOW)


async def test_a_preference_beats_unrelated_facts(db: Any) -> None:
    hits = await search(db, "what kind of food does the caller like?")
    assert hits[0].content == "Prefers Italian food"
    assert "Prefers Thai food" not in [h.content for h in hits]


async def test_a_superseded_fact_loses_to_its_replacement(db: Any) -> None:
    hits = await search(db, "which city do they live in")
    contents = [h.content for h in hits]
    assert contents[0] == "Lives in Manchester"
    assert "Lives in Leeds" not in contents


async def test_a_name_is_found_by_its_words(db: Any) -> None:
    hits = await search(db, "Biscuit")
    assert hits[0].content == "Has a dog named Biscuit"
    assert "lexical" in hits[0].via and "lexical" in hits[0].breakdown


async def test_linked_memories_reach_each_other_in_one_hop(db: Any) -> None:
    hits = {h.content: h for h in await search(db, "golden retriever")}
    named = hits["Has a dog named Biscuit"]
    assert "graph" in named.via and named.breakdown["link"] >= 0.8
    assert all(h.breakdown["link"] == 0 for h in hits.values() if "graph" not in h.via)
    assert "Prefers Italian food" not in hits  # unrelated: under the cosine floor


async def test_sector_filter_keeps_only_those_sectors(db: Any) -> None:
    hits = await search(db, "surgery appointment", sectors=("emotional",))
    assert [h.content for h in hits] == ["Feels anxious about the knee surgery"]
    both = await search(db, "surgery appointment", sectors=("emotional", "episodic"))
    assert {h.sector for h in both} == {"emotional", "episodic"}


async def test_limit_and_min_score_bound_the_results(db: Any) -> None:
    everything = await search(db, MANY, limit=50)
    assert len(everything) == 8  # every active memory has one of the words
    assert len(await search(db, MANY, limit=2)) == 2
    cut = everything[2].score
    kept = await search(db, MANY, limit=50, min_score=cut)
    assert [h.memory_id for h in kept] == [h.memory_id for h in everything[:3]]


async def test_an_unrelated_question_finds_nothing(db: Any) -> None:
    # The nearest vectors of an unrelated question are below the cosine floor, and no
    # word of it is in a memory.
    assert await search(db, "zebra crossing") == []


async def test_hits_explain_their_score_and_where_they_came_from(db: Any) -> None:
    [hit] = await search(db, "penicillin allergy", limit=1)
    assert hit.content == "Allergic to penicillin"
    assert set(hit.breakdown) >= {"relevance", "salience", "recency", "link", "cosine"}
    composite = (
        0.6 * hit.breakdown["relevance"]
        + 0.2 * hit.breakdown["salience"]
        + 0.1 * hit.breakdown["recency"]
        + 0.1 * hit.breakdown["link"]
    )
    assert hit.score == pytest.approx(composite, abs=1e-5)
    assert hit.provenance == [{"conversation_id": "conv-2", "turns": [1]}]
    assert hit.observed_at == BASE_TIME + timedelta(days=2)


async def test_an_unknown_caller_has_no_results(db: Any) -> None:
    assert await search(db, "food", subject=f"{TENANT}/+15559999999") == []
