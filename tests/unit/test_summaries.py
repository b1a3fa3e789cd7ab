"""The extractive summariser's text (grouped, strongest first, bounded, deterministic), what
a ``summary.generated`` event must say, and the processor's configuration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from projections.summaries import SummaryProcessor
from projections.summaries.summariser import (
    CONVERSATION_CHARS,
    PROFILE_CHARS,
    PROFILE_MEMORIES,
    ExtractiveSummariser,
    ProfileMemory,
    Summariser,
)
from schemas import ConversationEndedData, SummaryGeneratedData
from services.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SUMMARISER = ExtractiveSummariser()


def memory(
    content: str,
    kind: str = "fact",
    *,
    sector: str = "semantic",
    salience: float = 0.7,
    days_ago: float = 0,
    reinforcements: int = 0,
) -> ProfileMemory:
    said = NOW - timedelta(days=days_ago)
    return ProfileMemory(
        memory_id=uuid.uuid4(),
        content=content,
        sector=sector,
        kind=kind,
        salience=salience,
        reinforcements=reinforcements,
        observed_at=said,
        last_seen_at=said,
    )


def conversation(*lines: tuple[str, str]) -> ConversationEndedData:
    return ConversationEndedData.model_validate(
        {
            "conversation_id": "conv-1",
            "started_at": NOW,
            "status": "done",
            "turns": [
                {"role": role, "text": text, "offset_ms": i * 1000}
                for i, (role, text) in enumerate(lines)
            ],
        }
    )


def test_the_extractive_summariser_is_a_summariser() -> None:
    assert isinstance(SUMMARISER, Summariser)
    assert (SUMMARISER.name, SUMMARISER.version) == ("extractive", "1")


def test_a_profile_groups_memories_by_kind_in_a_fixed_order_strongest_first() -> None:
    booked = memory("Booked a cleaning for Tuesday at 3pm", "event", sector="episodic", days_ago=2)
    memories = [
        memory("Wants whitening before the wedding", "plan", sector="episodic", salience=0.6),
        memory("Prefers morning appointments", "preference", salience=0.6),
        memory("Lives in Boulder", salience=0.7),
        memory("Name is Maria Lopez", "identity", salience=0.8),
        memory("Allergic to penicillin", salience=0.9),
        booked,
        memory("Worried about the cost", "feeling", sector="emotional", salience=0.5),
    ]
    summary = SUMMARISER.profile_now(memories, NOW)
    assert summary.text == (
        "Identity: Name is Maria Lopez."
        " Facts: Allergic to penicillin; Lives in Boulder."
        " Preferences: Prefers morning appointments."
        " Plans: Wants whitening before the wedding (2026-06-01)."
        " Recent events: Booked a cleaning for Tuesday at 3pm (2026-05-30)."
        " Feelings: Worried about the cost (2026-06-01)."
    )
    # memory_ids: strongest first (salience, reinforcement, decay).
    assert summary.memory_ids[0] == memories[4].memory_id
    assert set(summary.memory_ids) == {m.memory_id for m in memories}


def test_strength_counts_reinforcements_and_decay_at_the_profiles_time() -> None:
    old_event = memory("Had a root canal", "event", sector="episodic", salience=0.9, days_ago=90)
    said_often = memory("Drinks a lot of coffee", "habit", salience=0.5, reinforcements=6)
    plain = memory("Has a dog", salience=0.7)
    summary = SUMMARISER.profile_now([old_event, plain, said_often], NOW)
    # 0.5 + 6 x 0.05 = 0.8 > 0.7 > 0.9 x e^(-0.015 x 90) = 0.23
    assert summary.memory_ids == (said_often.memory_id, plain.memory_id, old_event.memory_id)
    # The same inputs at the same time give the same text, whatever their order.
    again = SUMMARISER.profile_now([said_often, old_event, plain], NOW)
    assert again == summary


def test_a_profile_stays_under_its_bound_by_leaving_out_the_weakest_memories() -> None:
    memories = [
        memory(f"Fact number {i} about the caller, told at some length on a call", salience=i / 40)
        for i in range(1, 40)
    ]
    summary = SUMMARISER.profile_now(memories, NOW)
    assert len(summary.text) <= PROFILE_CHARS
    assert not summary.text.endswith("…")  # whole memories, none cut
    assert 0 < len(summary.memory_ids) <= PROFILE_MEMORIES
    kept = [m for m in memories if m.memory_id in summary.memory_ids]
    left_out = [m for m in memories if m.memory_id not in summary.memory_ids]
    assert min(m.salience for m in kept) > max(m.salience for m in left_out)
    assert "Fact number 39 " in summary.text and "Fact number 1 " not in summary.text


def test_one_memory_longer_than_the_bound_is_cut_at_a_word() -> None:
    long = memory("Explained " + "a very long story " * 60)
    summary = SUMMARISER.profile_now([long], NOW)
    assert len(summary.text) <= PROFILE_CHARS and summary.text.endswith("…")
    assert summary.memory_ids == (long.memory_id,)


def test_no_memory_gives_an_empty_profile() -> None:
    assert SUMMARISER.profile_now([], NOW).text == ""


def test_an_unknown_kind_is_listed_last_as_other() -> None:
    text = SUMMARISER.profile_now(
        [memory("Collects stamps", "hobby"), memory("Lives in Denver")], NOW
    ).text
    assert text == "Facts: Lives in Denver. Other: Collects stamps."


def test_a_conversation_summary_lists_what_the_caller_told_in_order() -> None:
    summary = SUMMARISER.conversation_now(
        conversation(
            ("agent", "Bayview Dental, how can I help?"),
            ("user", "I'm allergic to penicillin."),
            ("agent", "Noted."),
            ("user", "And I just moved to Boulder."),
        )
    )
    assert summary is not None
    assert summary.text.startswith("Caller: Allergic to penicillin; ")
    assert "Boulder" in summary.text and summary.text.endswith(".")


def test_a_conversation_with_nothing_to_extract_is_summarised_in_the_callers_words() -> None:
    summary = SUMMARISER.conversation_now(
        conversation(("user", "Hi"), ("user", "What time do you close on Saturdays today?"))
    )
    assert summary is not None
    assert summary.text == "Caller said: What time do you close on Saturdays today?"
    long = SUMMARISER.conversation_now(conversation(*[("user", "what about the price " * 10)] * 5))
    assert long is not None and len(long.text) <= CONVERSATION_CHARS


def test_a_conversation_in_which_the_caller_said_nothing_has_no_summary() -> None:
    assert SUMMARISER.conversation_now(conversation(("agent", "Hello?"), ("user", "Hi"))) is None


def test_a_summary_event_says_what_it_is_about() -> None:
    base = {
        "text": "Facts: Lives in Denver.",
        "generator": "extractive",
        "generator_version": "1",
        "inputs": {"memory_count": 1, "last_event_id": uuid.uuid4(), "as_of": NOW},
    }
    SummaryGeneratedData.model_validate({**base, "kind": "profile", "sequence": 1})
    SummaryGeneratedData.model_validate({**base, "kind": "conversation", "conversation_id": "c"})
    for wrong in (
        {"kind": "profile"},  # no sequence
        {"kind": "profile", "sequence": 1, "conversation_id": "c"},
        {"kind": "conversation"},  # no conversation
        {"kind": "conversation", "conversation_id": "c", "sequence": 2},
        {"kind": "conversation", "conversation_id": "c", "text": " "},
    ):
        with pytest.raises(ValidationError):
            SummaryGeneratedData.model_validate({**base, **wrong})
    # An empty profile is allowed: every memory of the user was retracted.
    SummaryGeneratedData.model_validate({**base, "kind": "profile", "sequence": 2, "text": ""})


def test_the_processor_takes_its_debounce_from_the_settings() -> None:
    processor = SummaryProcessor.from_settings(Settings(summary_debounce_s=2.5))
    assert processor.debounce == timedelta(seconds=2.5)
    assert isinstance(processor.summariser, ExtractiveSummariser)
    with pytest.raises(ValueError, match="negative"):
        SummaryProcessor(debounce=timedelta(seconds=-1))
