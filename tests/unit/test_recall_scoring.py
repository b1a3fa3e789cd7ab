"""bench_recall's corpus reading, platform bodies and scoring, without infrastructure."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from schemas import ConversationEnded, decode_event, encode_event
from services.identity import normalise_phone
from services.ingest.platforms import elevenlabs, retell, vapi
from tests.benchmarks import bench_recall as recall
from tests.benchmarks.bench_ingest import PAYLOADS
from tests.benchmarks.bench_recall import (
    BM25,
    Conversation,
    Question,
    Turn,
    answer_rank,
    assign_stand_ins,
    bm25_results,
    contains_keywords,
    evidence_recall,
    first_evidence_rank,
    is_stale,
    parse_corpus,
    result_text,
    score,
    summarise,
    take,
    tokenize,
)

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def callers_document() -> dict[str, Any]:
    return {
        "half": "tune",
        "callers": [
            {
                "id": "dental-01",
                "domain": "dental",
                "name": "Maria Delgado",
                "phone": "+15550100101",  # 555: no phone plan assigns it
                "calls": [
                    {
                        "id": "c2",
                        "platform": "vapi",
                        "started_at": "2026-03-06T10:00:00Z",
                        "turns": [
                            {"role": "agent", "text": "Bayview Dental, Ava speaking."},
                            {"role": "user", "text": "I need to move my cleaning."},
                            {"role": "agent", "text": "Friday the 13th at 2 PM?"},
                        ],
                    },
                    {
                        "id": "c1",
                        "platform": "elevenlabs",
                        "started_at": "2026-03-02T15:04:00Z",
                        "turns": [
                            {"role": "agent", "text": "Thanks for calling, how can I help?"},
                            {"role": "user", "text": "Book a cleaning, Tuesday please."},
                        ],
                    },
                ],
                "questions": [
                    {
                        "id": "q1",
                        "question": "When is my cleaning now?",
                        "evidence": [["c2", 2]],
                        "answers": ["Friday", ["13th", "thirteenth"]],
                        "stale": ["Tuesday"],
                        "kind": "changed",
                    }
                ],
            },
            {
                "id": "plumb-01",
                "name": "Tom",
                "phone": "+14155552671",
                "calls": [
                    {
                        "id": "c1",
                        "platform": "retell",
                        "started_at": "2026-03-03T08:30:00Z",
                        "turns": [{"role": "user", "text": "My Rheem heater leaks."}],
                    }
                ],
                "questions": [],
            },
        ],
    }


def long_document() -> dict[str, Any]:
    return {
        "half": "report",
        "conversations": [
            {
                "id": "long-01",
                "user": "Jordan",
                "agent": "Sam",
                "sessions": [
                    {
                        "id": "s1",
                        "date": "2026-01-04T19:00:00Z",
                        "turns": [
                            {"role": "user", "text": "I adopted a beagle named Pepper."},
                            {"role": "agent", "text": "When?"},
                        ],
                    }
                ],
                "questions": [
                    {
                        "id": "q1",
                        "question": "What is the dog called?",
                        "evidence": [["s1", 0]],
                        "answers": ["Pepper"],
                        "kind": "person",
                    }
                ],
            }
        ],
    }


def memory(content: str, *turns: tuple[str, int]) -> dict[str, Any]:
    by_conversation: dict[str, list[int]] = {}
    for conversation, seq in turns:
        by_conversation.setdefault(conversation, []).append(seq)
    return {
        "memory_id": "m",
        "content": content,
        "provenance": [{"conversation_id": c, "turns": s} for c, s in by_conversation.items()],
    }


def passage(content: str, ref: tuple[str, int], *context: str) -> dict[str, Any]:
    return {
        "type": "passage",
        "content": content,
        "speaker": "caller",
        "context": [{"seq": i, "speaker": "agent", "text": t} for i, t in enumerate(context)],
        "provenance": [{"conversation_id": ref[0], "turns": [ref[1]]}],
    }


# -- the corpus ---------------------------------------------------------------------------


def test_a_callers_file_maps_evidence_to_conversation_ids_and_sorts_calls_by_time() -> None:
    corpus = parse_corpus(callers_document(), name="callers_tune.json")
    assert (corpus.name, corpus.half) == ("callers", "tune")
    maria = corpus.dialogues[0]
    assert [c.id for c in maria.conversations] == ["dental-01-c1", "dental-01-c2"]
    assert maria.conversations[0].platform == "elevenlabs"
    question = maria.questions[0]
    assert question.evidence == (("dental-01-c2", 2),)
    assert question.answers == ("Friday", ("13th", "thirteenth"))
    assert question.stale == ("Tuesday",)
    # A number no phone plan assigns has no user yet; a valid one is its E.164 form.
    assert maria.user == ""
    assert corpus.dialogues[1].user == "+14155552671"


def test_a_long_file_makes_one_user_per_conversation_and_one_conversation_per_session() -> None:
    corpus = parse_corpus(long_document(), name="long_report.json")
    dialogue = corpus.dialogues[0]
    assert (corpus.name, corpus.half, dialogue.user, dialogue.name) == (
        "long",
        "report",
        "long-01",
        "Jordan",
    )
    assert [(c.id, c.platform) for c in dialogue.conversations] == [("long-01-s1", "events")]
    assert dialogue.questions[0].evidence == (("long-01-s1", 0),)


@pytest.mark.parametrize("evidence", [[["c9", 0]], [["c1", 2]], [["c1", -1]]])
def test_evidence_naming_no_turn_is_refused(evidence: list[list[Any]]) -> None:
    document = callers_document()
    document["callers"][0]["questions"][0]["evidence"] = evidence
    with pytest.raises(ValueError, match="names no turn"):
        parse_corpus(document, name="callers_tune.json")


def test_callers_without_a_valid_number_get_distinct_valid_stand_ins() -> None:
    dialogues = list(parse_corpus(callers_document()).dialogues)
    second = dataclasses.replace(dialogues[0], key="dental-02", user="")
    assigned, replaced = assign_stand_ins([*dialogues, second])
    assert replaced == 2
    users = [d.user for d in assigned]
    assert users[1] == "+14155552671"
    assert len(set(users)) == 3
    assert all(normalise_phone(u) == u for u in users)


def test_take_keeps_a_fraction_and_at_least_one() -> None:
    dialogues = list(parse_corpus(callers_document()).dialogues)
    assert take(dialogues, 1.0) == dialogues
    assert take(dialogues, 0.5) == dialogues[:1]
    assert take(dialogues, 0.01) == dialogues[:1]


# -- scoring ------------------------------------------------------------------------------


def test_keywords_are_case_insensitive_and_nested_lists_are_alternatives() -> None:
    answers = ("Friday", ("13th", "thirteenth"))
    assert contains_keywords("booked for FRIDAY the Thirteenth", answers)
    assert contains_keywords("friday 13th", answers)
    assert not contains_keywords("Friday the 14th", answers)
    assert not contains_keywords("the 13th", answers)
    assert contains_keywords("anything", ())


def test_recall_counts_evidence_turns_covered_by_the_top_k_provenance() -> None:
    evidence = [("c2", 2), ("c2", 4)]
    results = [
        memory("unrelated", ("c1", 1)),
        memory("half of it", ("c2", 2), ("c2", 3)),
        passage("the rest", ("c2", 4)),
    ]
    assert evidence_recall(evidence, results, 1) == 0.0
    assert evidence_recall(evidence, results, 2) == 0.5
    assert evidence_recall(evidence, results, 10) == 1.0
    assert first_evidence_rank(evidence, results) == 2
    assert first_evidence_rank([("c9", 0)], results) is None
    # A turn of another conversation with the same seq covers nothing.
    assert evidence_recall([("c3", 2)], results, 10) == 0.0


def test_a_passage_answers_through_its_context() -> None:
    hit = passage("Friday works.", ("c2", 3), "How about Friday the 13th?")
    assert "13th" in result_text(hit)
    assert answer_rank([memory("Tuesday"), hit], ("Friday", ("13th",))) == 2
    assert answer_rank([memory("Tuesday")], ("Friday",)) is None
    assert answer_rank([memory("Tuesday")], ()) is None


@pytest.mark.parametrize(
    ("contents", "stale"),
    [
        (["Cleaning on Tuesday", "Cleaning moved to Friday the 13th"], True),  # old ranks above
        (["Cleaning moved to Friday the 13th", "Cleaning on Tuesday"], False),
        (["Cleaning on Tuesday"], True),  # only the old value found
        (["Moved from Tuesday to Friday the 13th"], False),  # one result says both
        (["Something else"], False),
    ],
)
def test_stale_when_a_superseded_value_ranks_above_the_answer(
    contents: list[str], stale: bool
) -> None:
    results = [memory(c) for c in contents]
    assert is_stale(results, ("Friday", ("13th",)), ("Tuesday",)) is stale


def test_score_and_summary() -> None:
    question = Question(
        id="q1",
        question="When is my cleaning now?",
        evidence=(("c2", 2),),
        answers=("Friday",),
        stale=("Tuesday",),
        kind="changed",
    )
    near = score(question, [memory("Tuesday", ("c1", 1)), memory("Friday", ("c2", 2))], 5.0)
    assert (near.recall_5, near.hit_5, near.stale, near.first_evidence_rank) == (1.0, True, True, 2)
    far = score(question, [memory(f"x{i}") for i in range(5)] + [memory("Friday", ("c2", 2))], 7.0)
    assert (far.recall_5, far.recall_10, far.hit_5, far.stale, far.answer_rank) == (
        0.0,
        1.0,
        False,
        False,
        6,
    )
    fact = score(dataclasses.replace(question, kind="fact"), [], 9.0)
    assert fact.stale is None
    summary = summarise([near, far, fact])
    assert summary.questions == 3
    assert summary.recall_10 == pytest.approx(2 / 3)
    assert summary.hit_5 == pytest.approx(1 / 3)
    assert (summary.stale_rate, summary.stale_questions) == (0.5, 2)
    assert (summary.latency_p50, summary.latency_p95) == (7.0, 9.0)


def test_tokenize_lowercases_and_drops_stop_words_and_contraction_parts() -> None:
    assert tokenize("I don't want the Rheem's 12-year-old heater!") == [
        "want",
        "rheem",
        "12",
        "year",
        "old",
        "heater",
    ]


def test_bm25_ranks_rare_terms_and_shorter_documents_first() -> None:
    documents = [
        tokenize("the heater is leaking in the garage"),
        tokenize("my dog Biscuit likes the garage and the garden and the yard and the park"),
        tokenize("the dog is friendly"),
        tokenize("nothing to see here"),
    ]
    index = BM25(documents)
    assert index.top(tokenize("dog"), 10) == [2, 1]  # shorter first; no zero scores
    assert index.top(tokenize("Biscuit garage"), 1) == [1]
    # Okapi by hand: one document holds "heater" once.
    n, df, k1, b = 4, 1, 1.2, 0.75
    length, average = len(documents[0]), sum(map(len, documents)) / 4
    expected = (
        math.log(1 + (n - df + 0.5) / (df + 0.5))
        * (k1 + 1)
        / (1 + k1 * (1 - b + b * length / average))
    )
    assert index.scores(["heater"])[0] == pytest.approx(expected)


def test_the_baseline_returns_the_users_turns_as_passages() -> None:
    dialogue = parse_corpus(long_document()).dialogues[0]
    results = bm25_results(dialogue, "What is the beagle called?")
    assert [r["provenance"] for r in results] == [[{"conversation_id": "long-01-s1", "turns": [0]}]]
    assert results[0]["content"] == "I adopted a beagle named Pepper."


# -- platform bodies ----------------------------------------------------------------------

CONVERSATION = Conversation(
    id="dental-01-c1",
    corpus_id="c1",
    platform="elevenlabs",
    started_at=datetime(2026, 3, 2, 15, 4, tzinfo=UTC),
    turns=(
        Turn("agent", "Thanks for calling Bayview Dental, this is Ava."),
        Turn("user", "I need to move my cleaning.\nSorry, my cleaning, to Friday."),
        Turn("agent", ""),
        Turn("user", "Yes"),
        Turn("user", "and I'm allergic to penicillin."),
    ),
)
PHONE = "+14155551000"


@pytest.mark.parametrize(
    ("build", "parse"),
    [
        (recall.elevenlabs_body, elevenlabs.parse_post_call),
        (recall.vapi_body, vapi.parse_server_message),
        (recall.retell_body, retell.parse_webhook),
    ],
)
def test_each_platform_body_keeps_every_corpus_turn_as_one_turn(build: Any, parse: Any) -> None:
    body = orjson.loads(orjson.dumps(build(CONVERSATION, PHONE)))
    webhook = parse("recall", body, received_at=NOW, default_region="US")
    [event] = webhook.events
    assert isinstance(event, ConversationEnded)
    assert event.subject == f"recall/{PHONE}"
    assert event.data.conversation_id == CONVERSATION.id
    assert event.data.started_at == CONVERSATION.started_at
    assert event.data.duration_secs is not None and event.data.duration_secs > 10
    assert [(t.role, t.text) for t in event.data.turns] == [
        (t.role, t.text) for t in CONVERSATION.turns
    ]
    offsets = [t.offset_ms for t in event.data.turns]
    assert offsets == sorted(offsets)


def test_a_long_session_is_a_valid_conversation_ended_of_its_user() -> None:
    dialogue = parse_corpus(long_document()).dialogues[0]
    session = dialogue.conversations[0]
    event = decode_event(encode_event(recall.ended_event(session, dialogue)))
    assert isinstance(event, ConversationEnded)
    assert event.subject == f"{recall.TENANT}/long-01"
    assert event.data.started_at == session.started_at
    assert [(t.role, t.text) for t in event.data.turns] == [(t.role, t.text) for t in session.turns]
    assert event.data.dynamic_variables == {"user_name": "Jordan"}


# -- the sources the server accepts ----------------------------------------------------------


async def modes_of(
    answer: Callable[[dict[str, Any]], httpx.Response],
) -> dict[str, list[str] | None]:
    def handler(request: httpx.Request) -> httpx.Response:
        return answer(orjson.loads(request.content))

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
        return await recall._supported_modes(client, "+14155551000")


async def test_a_server_refusing_sources_is_searched_once_as_fused() -> None:
    def refuse(body: dict[str, Any]) -> httpx.Response:
        if "sources" in body:
            error = {"code": "invalid_request", "message": "extra", "path": "sources"}
            return httpx.Response(422, json={"error": error})
        return httpx.Response(200, json={"results": []})

    assert await modes_of(refuse) == {"fused": None}


async def test_a_server_knowing_sources_is_searched_three_ways() -> None:
    modes = await modes_of(lambda body: httpx.Response(200, json={"results": []}))
    assert modes == {"memories": ["memories"], "passages": ["passages"], "fused": None}


def test_why_the_vapi_body_has_no_system_message() -> None:
    # A live assistant's report starts with its system prompt, which becomes turn 0:
    # every spoken turn's seq would then be its corpus index + 1.
    body = orjson.loads((PAYLOADS / "vapi_end_of_call_report.json").read_bytes())
    [event] = vapi.parse_server_message("recall", body, received_at=NOW).events
    assert isinstance(event, ConversationEnded)
    assert event.data.turns[0].role == "system"
    built = recall.vapi_body(CONVERSATION, PHONE)["message"]["artifact"]["messages"]
    assert [m["role"] for m in built] == ["bot", "user", "bot", "user", "user"]


def test_answer_hit_reads_the_top_five_together_or_in_one_result() -> None:
    question = Question(
        id="q2",
        question="Which breed did she want, and which did she adopt?",
        evidence=(("c1", 1), ("c2", 3)),
        answers=("border collie", "beagle"),
        stale=(),
        kind="multihop",
    )
    apart = score(question, [memory("a border collie"), memory("x"), memory("got a beagle")])
    assert (apart.hit_5, apart.hit_5_single) == (True, False)
    together = score(question, [memory("border collie, then a beagle")])
    assert (together.hit_5, together.hit_5_single) == (True, True)
    late = score(question, [memory("a border collie")] + [memory("x")] * 4 + [memory("beagle")])
    assert (late.hit_5, late.hit_5_single) == (False, False)
