"""The agent tools' answer from a call's prefetches: which prefetched hits answer a question
(projections.live.covering) and the line the agent reads (services.query.tools)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from projections.live import Prefetch, covering
from schemas import PrefetchedHit
from services.errors import ApiError
from services.query.tools import TOOL_RESULTS, check_id, prefetched_answer_text

AT = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)


def memory(text: str, score: float = 0.5, said_at: datetime | None = AT) -> PrefetchedHit:
    return PrefetchedHit(kind="memory", id=str(uuid.uuid4()), text=text, score=score,
                         said_at=said_at)  # fmt: skip


def passage(text: str, said_at: datetime | None = AT) -> PrefetchedHit:
    return PrefetchedHit(kind="passage", id="call-1#3", text=text, score=0.1, said_at=said_at,
                         conversation_id="call-1", turns=(3,))  # fmt: skip


def topic(text: str, *hits: PrefetchedHit, seq: int = 1) -> Prefetch:
    return Prefetch(event_id=uuid.uuid4(), seq=seq, topic=text, hits=hits, created_at=AT)


def test_a_memory_is_its_content_dated_and_a_passage_the_callers_words_dated() -> None:
    text = prefetched_answer_text(
        "penicillin?",
        [memory("Allergic to\npenicillin"), passage("I had  a rash from it")],
    )
    assert text == (
        "Known about this caller: Allergic to penicillin (2026-03-04);"
        ' (2026-03-04; they said "I had a rash from it").'
    )


def test_an_undated_hit_says_no_date() -> None:
    text = prefetched_answer_text("dog", [memory("Has a dog", said_at=None), passage("Hi", None)])
    assert text == 'Known about this caller: Has a dog; (they said "Hi").'


def test_the_answer_is_at_most_five_hits_and_800_characters_on_one_line() -> None:
    hits = [memory(f"fact {i} " + "word " * 40) for i in range(8)]
    text = prefetched_answer_text("x", hits)
    assert len(text) <= 800 and "\n" not in text and text.endswith("…")
    assert "fact 4" in prefetched_answer_text("x", [memory(f"fact {i}") for i in range(8)])
    assert "fact 5" not in prefetched_answer_text("x", [memory(f"fact {i}") for i in range(8)])
    assert TOOL_RESULTS == 5
    assert prefetched_answer_text("zebra\n?", []) == 'No memories of this caller match "zebra ?".'


def test_the_hits_of_the_questions_topic_answer_it_first() -> None:
    allergy = memory("Allergic to penicillin", score=0.2)
    rash = passage("The penicillin rash was in 2019")
    dentist = memory("Dentist appointment on Tuesday", score=0.9)
    prefetches = [
        topic("my penicillin allergy", allergy, rash),
        topic("when is the dentist", dentist, seq=2),
    ]
    assert covering(prefetches, "Is the caller allergic to penicillin?") == [allergy, rash]
    assert covering(prefetches, "dentist on Tuesday?") == [dentist]
    # Nothing shared, or no content word at all: not covered, a search answers.
    assert covering(prefetches, "Where do they live?") == []
    assert covering(prefetches, "What do you know?") == []


@pytest.mark.parametrize("value", ["x" * 257, "call\x00", "call\n1"])
def test_an_id_over_its_length_or_with_control_characters_is_refused(value: str) -> None:
    with pytest.raises(ApiError) as refused:
        check_id(value, "call_id")
    assert (refused.value.status, refused.value.code, refused.value.path) == (
        422,
        "invalid_request",
        "call_id",
    )


def test_an_id_is_stripped_and_a_blank_one_is_none() -> None:
    assert check_id(" call-1 ", "call_id") == "call-1"
    assert check_id("  ", "call_id") is None
    assert check_id(None, "call_id") is None
