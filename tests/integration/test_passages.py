"""Passages: every turn of a call, searchable with its neighbours as context, through the
conversations read model (full text), the embedder and the embeddings read model
(vectors), and the search that ranks them with memories."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from projections.conversations import ConversationsProjection
from projections.conversations.passages import passages
from projections.embeddings.processor import PASSAGES_PER_EVENT, EmbeddingProcessor
from projections.embeddings.projection import EmbeddingsProjection
from projections.memories import MemoriesProjection
from projections.search import dense_candidates
from schemas import (
    ConversationEnded,
    Event,
    MemoryExtracted,
    MemorySuperseded,
    PassagesEmbedded,
    Source,
    Turn,
    UserForgotten,
    decode_event,
)
from services.query.search import (
    Hit,
    SearchQuery,
    SearchWeights,
    lexical_candidates,
    search_memories,
)
from services.settings import Settings
from streams import EventLog, versions
from streams.topics import EMBEDDINGS, Topics
from tests.helpers import BASE_TIME, read_topic
from tests.integration.projection_contract import project
from tests.integration.query.corpus import EMBEDDER

TENANT = "bayview"
CALLER = f"{TENANT}/+14155550100"
OTHER = f"{TENANT}/+14155550199"
NOW = BASE_TIME + timedelta(days=40)

DENTAL = [
    ("agent", "Thanks for calling Bayview Dental, this is Ava. How can I help?"),
    ("user", "Hi, um, I need to move my cleaning."),
    ("agent", "Sure. How about Friday the 7th at 9?"),
    ("user", "Yeah, Friday works."),
    ("tool", ""),
    ("agent", "Great, you're booked for Friday the 7th at nine."),
]


def call(
    conversation_id: str,
    turns: list[tuple[str, str]],
    *,
    subject: str = CALLER,
    days: float = 0,
) -> ConversationEnded:
    at = BASE_TIME + timedelta(days=days)
    return ConversationEnded.create(
        tenant=TENANT,
        subject=subject,
        source=Source(platform="vapi", event_id=conversation_id),
        occurred_at=at + timedelta(minutes=5),
        data={
            "conversation_id": conversation_id,
            "started_at": at,
            "ended_at": at + timedelta(minutes=5),
            "status": "done",
            "turns": [
                {"role": role, "text": text, "offset_ms": 2000 * seq}
                for seq, (role, text) in enumerate(turns)
            ],
        },
    )


def memory(
    content: str, conversation_id: str, turns: list[int], *, days: float = 0, key: str | None = None
) -> MemoryExtracted:
    at = BASE_TIME + timedelta(days=days)
    memory_id = uuid.uuid4()
    return MemoryExtracted.create(
        id=memory_id,
        tenant=TENANT,
        subject=CALLER,
        source=Source(platform="memstream"),
        occurred_at=at,
        data={
            "memory_id": memory_id,
            "content": content,
            "sector": "semantic",
            "salience": 0.7,
            "kind": "fact",
            "key": key,
            "observed_at": at,
            "extractor": "rules",
            "extractor_version": "1",
            "provenance": {"conversation_id": conversation_id, "turns": turns},
        },
    )


async def project_all(settings: Settings, events: list[Event]) -> None:
    async with EventLog(settings) as log:
        await log.append_many(events)
    await project(settings, ConversationsProjection())
    await project(settings, MemoriesProjection())
    await project(settings, EmbeddingProcessor(EMBEDDER))
    await project(settings, EmbeddingsProjection())


async def search(
    db: Any, text: str, *, weights: SearchWeights | None = None, **options: Any
) -> list[Hit]:
    query = SearchQuery(tenant=TENANT, subject=options.pop("subject", CALLER), text=text,
                        **options)  # fmt: skip
    [vector] = EMBEDDER.embed([text])
    return await search_memories(
        db, query, vector=vector, model=EMBEDDER.name, now=NOW, weights=weights
    )


async def rows(db: Any, query: str, *params: Any) -> list[Any]:
    cursor = await db.execute(query, list(params))
    return await cursor.fetchall()


def test_a_passage_is_a_spoken_turn_with_its_neighbours_as_context() -> None:
    turns = [Turn(role=r, text=t, offset_ms=0) for r, t in DENTAL]  # type: ignore[arg-type]
    found = passages(turns, window=1)
    # The tool turn has no text: not a passage, and no passage's neighbour.
    assert [p.seq for p in found] == [0, 1, 2, 3, 5]
    friday = found[3]
    assert friday.text == "Yeah, Friday works."
    assert friday.before == ("Sure. How about Friday the 7th at 9?",)
    assert friday.after == ("Great, you're booked for Friday the 7th at nine.",)
    assert friday.embedded == "Sure. How about Friday the 7th at 9? Yeah, Friday works."
    assert found[0].before == () and found[-1].after == ()
    assert [p.seq for p in passages(turns, window=0)] == [0, 1, 2, 3, 5]
    assert passages(turns, window=0)[3].context == ""


async def test_every_spoken_turn_is_a_passage_with_its_context_and_moment(
    topics: Settings, db: Any
) -> None:
    await project_all(topics, [call("call-1", DENTAL)])
    found = await rows(
        db,
        "SELECT seq, role, text, context, spoken_at FROM conversations.passages"
        " WHERE tenant = %s AND subject = %s ORDER BY seq",
        TENANT,
        CALLER,
    )
    assert [r[0] for r in found] == [0, 1, 2, 3, 5]
    _, role, text, context, spoken_at = found[3]
    assert (role, text) == ("user", "Yeah, Friday works.")
    assert context == (
        "Sure. How about Friday the 7th at 9? Great, you're booked for Friday the 7th at nine."
    )
    assert spoken_at == BASE_TIME + timedelta(milliseconds=2000 * 3)
    # Each passage has its vector, of its window, recorded as an event.
    vectors = await rows(
        db,
        "SELECT seq, model FROM embeddings.passage_vectors WHERE subject = %s ORDER BY seq",
        CALLER,
    )
    assert vectors == [(s, EMBEDDER.name) for s in (0, 1, 2, 3, 5)]


async def test_a_long_call_is_embedded_in_events_of_bounded_size(topics: Settings, db: Any) -> None:
    turns = [("user" if i % 2 else "agent", f"line {i} about the boiler") for i in range(70)]
    await project_all(topics, [call("long-1", turns)])
    records = await read_topic(topics, Topics(topics.topic_prefix).name(EMBEDDINGS))
    events = sorted(
        (e for e in (decode_event(r.value) for r in records) if isinstance(e, PassagesEmbedded)),
        key=lambda e: e.data.passages[0].seq,
    )
    assert [len(e.data.passages) for e in events] == [PASSAGES_PER_EVENT, PASSAGES_PER_EVENT, 6]
    assert len({e.id for e in events}) == 3
    count = await rows(db, "SELECT count(*) FROM embeddings.passage_vectors")
    assert count == [(70,)]


async def test_a_replaced_transcript_replaces_its_passages_and_erasure_purges_them(
    topics: Settings, db: Any
) -> None:
    first = call("call-1", DENTAL)
    again = call("call-1", [("agent", "Hello?"), ("user", "Wrong number, sorry.")], days=0.1)
    forget = UserForgotten.create(
        tenant=TENANT,
        subject=OTHER,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(days=2),
        data={},
    )
    other = call("call-2", DENTAL, subject=OTHER, days=1)
    await project_all(topics, [first, again, other, forget])
    texts = await rows(
        db, "SELECT text FROM conversations.passages WHERE subject = %s ORDER BY seq", CALLER
    )
    assert texts == [("Hello?",), ("Wrong number, sorry.",)]
    purged = "SELECT count(*) FROM conversations.passages WHERE subject = %s"
    assert await rows(db, purged, OTHER) == [(0,)]
    assert await rows(
        db, "SELECT count(*) FROM embeddings.passage_vectors WHERE subject = %s", OTHER
    ) == [(0,)]
    # Vectors are kept per turn: the replacing call's two, and the first call's others.
    assert await rows(
        db, "SELECT seq FROM embeddings.passage_vectors WHERE subject = %s ORDER BY seq", CALLER
    ) == [(0,), (1,), (2,), (3,), (5,)]


async def test_a_short_answer_is_found_by_the_question_it_answers(
    topics: Settings, db: Any
) -> None:
    await project_all(topics, [call("call-1", DENTAL)])
    # "7th" and "9" are only in the agent's turns: the caller's answer is found through
    # its context, and quoted with it.
    hits = await search(db, "the 7th at 9")
    passages_found = [h for h in hits if h.type == "passage"]
    assert passages_found, hits
    top = passages_found[0]
    assert top.provenance[0]["conversation_id"] == "call-1"
    assert top.memory_id is None and top.sector is None
    # Every returned passage carries its speaker, moment and neighbours.
    for hit in passages_found:
        assert hit.speaker in {"caller", "agent"}
        assert isinstance(hit.observed_at, datetime)
        assert hit.context and all(c["seq"] != hit.turn for c in hit.context)
        # It cites its own turn, and the neighbours it absorbed (they ranked below it).
        assert hit.turn in hit.provenance[0]["turns"]
        assert set(hit.provenance[0]["turns"]) <= {hit.turn, *(c["seq"] for c in hit.context)}
    friday = [h for h in passages_found if h.content == "Yeah, Friday works."]
    assert friday and friday[0].context[0]["text"] == "Sure. How about Friday the 7th at 9?"
    assert await search(db, "which day for the cleaning", sources=("memories",)) == []


async def test_a_passage_its_better_neighbour_quotes_is_merged_into_it(
    topics: Settings, db: Any
) -> None:
    await project_all(topics, [call("call-1", DENTAL)])
    merged = await search(db, "the 7th at 9", sources=("passages",))
    apart = await search(
        db, "the 7th at 9", sources=("passages",), weights=SearchWeights(merge_neighbours=False)
    )
    # Apart, every passage is its own hit; merged, no turn is listed twice, none is lost,
    # and no hit cites a turn it does not show.
    assert len(merged) < len(apart)
    cited = [(h.conversation_id, t) for h in merged for t in h.provenance[0]["turns"]]
    assert len(cited) == len(set(cited))
    assert {t for _, t in cited} == {h.turn for h in apart}
    for hit in merged:
        shown = {hit.turn, *(c["seq"] for c in hit.context)}
        assert set(hit.provenance[0]["turns"]) <= shown


async def test_a_passage_cited_by_a_memory_is_folded_into_it(topics: Settings, db: Any) -> None:
    booked = memory("Cleaning moved to Friday the 7th at 9", "call-1", [2, 3])
    await project_all(topics, [call("call-1", DENTAL), booked])
    hits = await search(db, "Friday the 7th cleaning")
    assert hits[0].memory_id == booked.data.memory_id
    cited = [h for h in hits if h.type == "passage" and h.provenance[0]["turns"][0] in (2, 3)]
    assert cited == []  # folded into the memory that says it
    assert any(h.type == "passage" for h in hits)  # the others are still there


async def test_a_memory_quotes_what_says_it_with_its_neighbours(topics: Settings, db: Any) -> None:
    # The memory cites the caller's "Friday works" (turn 3): its context is that turn
    # first, then the agent's question before it and the turn after, as a passage shows.
    booked = memory("Cleaning moved to Friday the 7th at 9", "call-1", [3])
    await project_all(topics, [call("call-1", DENTAL), booked])
    for text in ("Friday the 7th cleaning", "appointment moved"):  # folded, or not a candidate
        [hit] = [h for h in await search(db, text) if h.memory_id == booked.data.memory_id]
        # The tool turn (4) has no text and is no passage: the next one is 5.
        assert [(c["seq"], c["speaker"]) for c in hit.context] == [
            (3, "caller"),
            (2, "agent"),
            (5, "agent"),
        ]
        assert hit.context[0]["text"] == "Yeah, Friday works."
        assert hit.context[1]["text"] == "Sure. How about Friday the 7th at 9?"
        assert all(c["conversation_id"] == "call-1" for c in hit.context)
    off = await search(db, "Friday the 7th cleaning", weights=SearchWeights(memory_context=False))
    [bare] = [h for h in off if h.memory_id == booked.data.memory_id]
    assert [c["seq"] for c in bare.context] == [3]  # the folded passage only


async def test_a_passage_a_memory_already_shows_is_merged_into_it(
    topics: Settings, db: Any
) -> None:
    booked = memory("Cleaning moved to Friday the 7th at 9", "call-1", [3])
    await project_all(topics, [call("call-1", DENTAL), booked])
    hits = await search(db, "Friday the 7th at 9")
    [held] = [h for h in hits if h.memory_id == booked.data.memory_id]
    shown = {c["seq"] for c in held.context}
    # No passage below it repeats a turn it shows; those turns joined its provenance.
    below = hits[hits.index(held) + 1 :]
    assert not [h for h in below if h.type == "passage" and h.turn in shown]
    cited = {t for p in held.provenance for t in p["turns"]}
    assert 3 in cited and cited <= shown
    apart = await search(
        db, "Friday the 7th at 9", weights=SearchWeights(merge_into_memories=False)
    )
    assert [h for h in apart if h.type == "passage" and h.turn == 2]  # listed apart


async def test_a_turn_two_memories_cite_ranks_only_one_of_them(topics: Settings, db: Any) -> None:
    # Both memories come from the caller's turn 1; the passage's rank goes to one only.
    # Worded apart from the turn, so the passage ranks above both of them.
    cleaning = memory("Dental appointment to change", "call-1", [1])
    moving = memory("Wants a different appointment day", "call-1", [1])
    await project_all(topics, [call("call-1", DENTAL), cleaning, moving])
    ids = {cleaning.data.memory_id, moving.data.memory_id}
    once = [
        h for h in await search(db, "I need to move my cleaning appointment") if h.memory_id in ids
    ]
    both = [
        h
        for h in await search(
            db, "I need to move my cleaning appointment", weights=SearchWeights(fold_once=False)
        )
        if h.memory_id in ids
    ]
    assert len(once) == len(both) == 2
    assert ["passage" in h.via for h in once].count(True) == 1
    assert ["passage" in h.via for h in both].count(True) == 2
    assert all(h.context[0]["seq"] == 1 for h in once)  # both still quote it


async def test_a_passage_only_superseded_memories_cite_ranks_below_the_current_one(
    topics: Settings, db: Any
) -> None:
    # The newer call (day 10) says what was replaced; the older one (day 5) the value
    # that replaced it: recency alone would put the stale passage first.
    oak_call = call("call-oak", [("agent", "Your address?"), ("user", "12 Oak Street.")], days=10)
    elm_call = call("call-elm", [("agent", "Your address?"), ("user", "40 Elm Street.")], days=5)
    oak = memory("Lives at 12 Oak Street", "call-oak", [1], days=10, key="address")
    elm = memory("Lives at 40 Elm Street", "call-elm", [1], days=11, key="address")
    replaced = MemorySuperseded.create(
        tenant=TENANT,
        subject=CALLER,
        source=Source(platform="memstream"),
        occurred_at=elm.occurred_at,
        data={
            "memory_id": oak.data.memory_id,
            "superseded_by": elm.data.memory_id,
            "observed_at": elm.data.observed_at,
        },
    )
    await project_all(topics, [oak_call, elm_call, oak, elm, replaced])
    hits = await search(db, "street", sources=("passages",))
    order = [h.content for h in hits]
    assert order.index("40 Elm Street.") < order.index("12 Oak Street.")
    fused = await search(db, "which street do they live on")
    assert fused[0].content == "Lives at 40 Elm Street"
    assert "Lives at 12 Oak Street" not in [h.content for h in fused]


async def test_another_callers_passages_are_never_found(topics: Settings, db: Any) -> None:
    await project_all(topics, [call("call-2", DENTAL, subject=OTHER)])
    assert await search(db, "Friday cleaning") == []
    assert [h.type for h in await search(db, "Friday cleaning", subject=OTHER)][:1] == ["passage"]


# What conversations.passage_stats must always be: the aggregate of the user's passages.
AGGREGATE = """
SELECT tenant, subject, count(*), sum(length(search)) FROM conversations.passages
 GROUP BY tenant, subject ORDER BY tenant, subject
"""
STATS = "SELECT tenant, subject, passages, lexemes FROM conversations.passage_stats ORDER BY 1, 2"


async def test_passage_stats_are_the_aggregate_of_the_passages_through_every_change(
    topics: Settings, db: Any
) -> None:
    first = call("call-1", DENTAL)
    again = call("call-1", [("agent", "Hello?"), ("user", "Wrong number, sorry.")], days=0.1)
    other = call("call-2", DENTAL, subject=OTHER, days=1)
    third = call("call-3", DENTAL, days=2)
    await project_all(topics, [first, other, third])
    assert await rows(db, STATS) == await rows(db, AGGREGATE)
    assert len(await rows(db, STATS)) == 2
    # A redelivered call replaces its passages (a delete, then a COPY).
    await project_all(topics, [again])
    assert await rows(db, STATS) == await rows(db, AGGREGATE)
    # Deletes through the view (what retention runs), then an update.
    await db.execute("DELETE FROM conversations.passages WHERE conversation_id = 'call-3'")
    assert await rows(db, STATS) == await rows(db, AGGREGATE)
    await db.execute(
        "UPDATE conversations.passages SET context = context || ' Friday Friday'"
        " WHERE conversation_id = 'call-2'"
    )
    assert await rows(db, STATS) == await rows(db, AGGREGATE)
    # Erasure: the user's row goes with their last passage.
    forget = UserForgotten.create(
        tenant=TENANT,
        subject=OTHER,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(days=3),
        data={},
    )
    await project_all(topics, [forget])
    assert await rows(db, STATS) == await rows(db, AGGREGATE)
    assert [r[1] for r in await rows(db, STATS)] == [CALLER]


async def test_the_lexical_list_is_the_same_with_passage_stats_as_from_every_passage(
    topics: Settings, db: Any
) -> None:
    await project_all(
        topics,
        [
            call("call-1", DENTAL),
            call("call-2", [("agent", "Any allergies?"), ("user", "Penicillin, yes.")], days=1),
            memory("Allergic to penicillin", "call-2", [1], days=1),
        ],
    )
    for text in ("Friday cleaning", "penicillin allergy", "What about nine on Friday?"):
        query = SearchQuery(tenant=TENANT, subject=CALLER, text=text)
        kept = await lexical_candidates(db, query, passage_stats=True)
        scanned = await lexical_candidates(db, query, passage_stats=False)
        assert kept and kept == scanned
        assert await lexical_candidates(db, query) == kept  # the database is asked


async def test_a_version_built_before_passage_stats_gets_them_at_its_next_start(
    topics: Settings, db: Any
) -> None:
    await project_all(topics, [call("call-1", DENTAL), call("call-2", DENTAL, subject=OTHER)])
    expected = await rows(db, AGGREGATE)
    # As a version registered before this release: no table, no triggers, no view.
    await db.execute("DROP VIEW conversations.passage_stats")
    await db.execute("DROP TABLE conversations_v1.passage_stats")
    for trigger in ("passage_stats_added", "passage_stats_changed", "passage_stats_removed"):
        await db.execute(f"DROP TRIGGER {trigger} ON conversations_v1.passages")
    assert await versions.register(db, ConversationsProjection(), 1) == "live"
    assert await rows(db, STATS) == expected
    await project_all(topics, [call("call-3", DENTAL, days=1)])
    assert await rows(db, STATS) == await rows(db, AGGREGATE) != expected


async def test_passage_vectors_are_half_precision_and_a_version_with_full_ones_still_works(
    topics: Settings, db: Any
) -> None:
    calls = [call("call-1", DENTAL), call("call-2", DENTAL, subject=OTHER)]
    await project_all(topics, calls)
    column = (
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'embeddings_v1.passage_vectors'::regclass AND attname = 'embedding'"
    )
    assert await rows(db, column) == [("halfvec",)]
    question = "Can I come in on Friday the 7th?"
    [vector] = EMBEDDER.embed([question])
    options: dict[str, Any] = {
        "tenant": TENANT, "subject": CALLER, "sectors": None, "memories": False,
        "passages": True, "vector": vector, "model": EMBEDDER.name, "depth": 10,
        "min_cosine": 0.0,
    }  # fmt: skip
    half = await dense_candidates(db, **options)
    assert [r["seq"] for r in half] and {r["conversation_id"] for r in half} == {"call-1"}
    # Stored at half precision: each value as float16 rounds it, the cosine barely moves.
    stored = await rows(
        db, "SELECT embedding::vector::text FROM embeddings.passage_vectors WHERE seq = 3"
        " AND subject = %s", CALLER
    )  # fmt: skip
    values = np.array(orjson.loads(stored[0][0]), dtype=np.float32)
    assert np.array_equal(values, values.astype(np.float16).astype(np.float32))
    # As a version created before halfvec: a `vector` column. New vectors still go in,
    # and the search answers with the same passages at the same distances.
    await db.execute("DROP VIEW embeddings.passage_vectors")
    await db.execute("ALTER TABLE embeddings_v1.passage_vectors ALTER COLUMN embedding TYPE vector")
    assert await versions.register(db, EmbeddingsProjection(), 1) == "live"
    assert await rows(db, column) == [("vector",)]
    await project_all(topics, [call("call-3", DENTAL, days=1)])
    full = await dense_candidates(db, **options)
    assert {r["conversation_id"] for r in full} == {"call-1", "call-3"}
    assert [(r["seq"], r["distance"]) for r in full if r["conversation_id"] == "call-1"] == [
        (r["seq"], r["distance"]) for r in half
    ]


async def test_a_question_about_now_weighs_what_was_said_later_more(
    topics: Settings, db: Any
) -> None:
    asked = ("agent", "Which plan are you on?")
    await project_all(
        topics,
        [
            call("call-1", [asked, ("user", "I'm on the Basic plan.")]),
            call("call-2", [asked, ("user", "I moved to the Premium plan.")], days=7),
        ],
    )
    weights = SearchWeights(merge_neighbours=False)

    def recency(hits: list[Hit]) -> dict[str, float]:
        return {h.content: h.breakdown["recency"] for h in hits if h.speaker == "caller"}

    def composite(hit: Hit, recency_weight: float) -> float:
        b = hit.breakdown
        return 0.6 * b["relevance"] + 0.2 * b["salience"] + recency_weight * b["recency"]

    # Recency counts back from the newest candidate: a week is 2^(-7/30) of a month's
    # half-life for any question, and half of a week's for a question about now, which
    # also weighs it 0.2 instead of 0.1.
    for question, half_life, weight in (
        ("Which plan is the caller on?", 30, 0.1),
        ("Which plan is the caller on now?", 7, 0.2),
    ):
        hits = await search(db, question, weights=weights)
        assert recency(hits) == {
            "I moved to the Premium plan.": 1.0,
            "I'm on the Basic plan.": pytest.approx(2 ** (-7 / half_life), abs=1e-6),
        }
        assert all(h.score == pytest.approx(composite(h, weight), abs=1e-5) for h in hits)
