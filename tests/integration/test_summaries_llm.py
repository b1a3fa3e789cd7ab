"""The LLM summariser on the real broker and database, the OpenAI API played by the fake
server (a real HTTP server; the real ``openai`` client talks to it): summaries recorded as
``llm:<model>``, no PII in any request, the platform's summary still preferred, invalid
answers retried then replaced by extractive ones, the breaker's fallback and recovery, a
crash replay whose model changed its mind, and a rebuild that calls no model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from projections.summaries import (
    SummariesProjection,
    SummaryProcessor,
    conversation_summary,
    latest_profile,
)
from projections.summaries.summariser import CONVERSATION_CHARS, PROFILE_CHARS
from schemas import Event
from services.settings import Settings
from streams import EventLog
from tests.fakes.openai_server import CHAT, FakeOpenAI
from tests.integration.projection_contract import project, snapshot
from tests.integration.test_providers import (
    LLM,
    SECRETS,
    assert_no_pii_sent,
    on_a_manual_clock,
    with_provider,
)
from tests.integration.test_summaries import (
    OTHER,
    SUBJECT,
    TENANT,
    OneBatch,
    ended,
    extracted,
    profiles,
    retracted,
    summaries,
)

GENERATOR = f"llm:{LLM}"
THIRD = f"{TENANT}/+15550000003"
USERS = (SUBJECT, OTHER, THIRD)

PROFILE_TEXT = "Dana lives in Denver and is allergic to penicillin."
CALL_TEXT = "The caller booked a cleaning and mentioned a penicillin allergy."


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_s=2.0) as server:
        yield server


def llm_processor(settings: Settings, model: FakeOpenAI, **changes: Any) -> SummaryProcessor:
    """The processor as ``memstream run`` builds it, pointed at the fake model, debounce 0."""
    return SummaryProcessor.from_settings(
        with_provider(settings, model, summary_debounce_s=0.0, **changes)
    )


def phoned_in() -> list[Event]:
    """A caller's memories and a call, with a phone number, an email and a card number."""
    return [
        extracted("Lives in Denver", key="home_city"),
        extracted("Allergic to penicillin", salience=0.9),
        extracted("Phone is (415) 555-0132", kind="identity", salience=0.8),
        extracted("Email is dana.k@example.com", kind="identity", salience=0.8),
        ended(
            "conv-llm",
            ("agent", "Bayview Dental, how can I help?"),
            ("user", "I'd like a cleaning. I'm allergic to penicillin, call (415) 555-0132."),
            ("agent", "Booked for Tuesday. Which card for the deposit?"),
            ("user", "The Visa, 4111 1111 1111 1111."),
            days=1,
        ),
        ended(
            "conv-platform",
            ("user", "I need to move my root canal appointment please."),
            days=2,
            summary="Wants to move the root canal.",
        ),
    ]


async def test_the_llm_path_writes_summaries_recorded_as_llm_and_sends_no_pii(
    topics: Settings, db: Any, model: FakeOpenAI
) -> None:
    model.answer("Allergic to penicillin", {"summary": PROFILE_TEXT})
    model.answer("I'd like a cleaning", {"summary": CALL_TEXT})
    async with EventLog(topics) as log:
        await log.append_many(phoned_in())
    await project(topics, llm_processor(topics, model))
    await project(topics, SummariesProjection())

    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None
    assert (profile["text"], profile["generator"]) == (PROFILE_TEXT, GENERATOR)
    assert profile["generator_version"] == "1"
    assert profile["memory_count"] == 4  # every memory it was given, strongest first
    call = await conversation_summary(db, TENANT, "conv-llm")
    assert call is not None and (call["text"], call["generator"]) == (CALL_TEXT, GENERATOR)
    # The platform's own summary is used as it is: the model is not asked about that call.
    platform = await conversation_summary(db, TENANT, "conv-platform")
    assert platform is not None and platform["generator"] == "platform"

    requests = [r for r in model.requests if r.path == CHAT]
    written = profiles(await summaries(topics))
    assert {p.data.generator for p in written} == {GENERATOR}
    assert len(requests) == len(written) + 1  # one a profile, one the conversation
    assert all("root canal" not in r.raw for r in requests)
    for request in requests:
        assert request.body["model"] == LLM
        assert request.body["temperature"] == 0 and isinstance(request.body["seed"], int)
        assert request.body["response_format"]["type"] == "json_schema"
    assert_no_pii_sent(model)
    assert any("[phone]" in r.raw for r in requests) and any("[card]" in r.raw for r in requests)
    assert all(s not in profile["text"] + call["text"] for s in SECRETS)


async def test_invalid_answers_are_retried_then_summarised_extractively(
    topics: Settings, db: Any, model: FakeOpenAI
) -> None:
    # Each user's profile request gets an unusable answer, every time it is asked.
    model.answer("Lives in Denver", "")
    model.answer("Has a cat", {"summary": "Has a cat. " * (PROFILE_CHARS // 10)})
    model.answer("Plays tennis", {"summary": "Plays tennis; call back on [phone]."})
    # The call's first answer is not JSON, the retry is well-formed.
    model.answer("dentist next week", {"summary": "Asked about a dentist visit."})
    model.fail("malformed", times=1, path=CHAT)
    batch: list[Event] = [
        extracted("Lives in Denver"),
        extracted("Has a cat", subject=OTHER),
        extracted("Plays tennis", subject=THIRD),
        ended("conv-retry", ("user", "I want to see the dentist next week please."), days=1),
    ]
    # retries=1: every request is made at most twice; the breaker stays closed throughout.
    async with OneBatch(topics, llm_processor(topics, model, breaker_failures=10)) as runner:
        await runner.apply(batch)

    events = await summaries(topics)
    by_subject = {p.subject: p for p in (e for e in events if e.data.kind == "profile")}
    assert {s: p.data.generator for s, p in by_subject.items()} == {
        SUBJECT: "extractive",
        OTHER: "extractive",
        THIRD: "extractive",
    }
    assert by_subject[SUBJECT].data.text == "Facts: Lives in Denver."
    assert "[phone]" not in by_subject[THIRD].data.text
    [call] = [e for e in events if e.data.kind == "conversation"]
    assert (call.data.text, call.data.generator) == ("Asked about a dentist visit.", GENERATOR)
    assert len(call.data.text) <= CONVERSATION_CHARS
    assert model.calls(CHAT) == 2 + 3 * 2


async def test_the_breaker_falls_back_to_extractive_summaries_and_recovers(
    topics: Settings, db: Any, model: FakeOpenAI
) -> None:
    for marker in ("Lives in Denver", "Has a cat", "Plays tennis", "Likes jazz"):
        model.answer(marker, {"summary": f"LLM: {marker}."})
    processor = llm_processor(topics, model, breaker_failures=1, breaker_reset_s=1.0)
    clock = on_a_manual_clock(processor.summariser.calls)  # type: ignore[attr-defined]
    model.fail("500", path=CHAT)
    async with OneBatch(topics, processor) as runner:
        # Two attempts fail: the breaker opens and the extractive summariser answers.
        await runner.apply([extracted("Lives in Denver")])
        assert model.calls(CHAT) == 2
        # Open: the model is not called at all.
        await runner.apply([extracted("Has a cat", subject=OTHER)])
        assert model.calls(CHAT) == 2

        # Back, and past the reset time: one trial call goes through and closes it.
        model.recover()
        clock.now += 1.0
        await runner.apply([extracted("Plays tennis", subject=THIRD)])
        await runner.apply([extracted("Likes jazz", kind="preference")])
    assert model.calls(CHAT) == 4

    # Per user, in log order (the topic's partitions have no order between them).
    events = await summaries(topics)
    written = {u: [(p.data.generator, p.data.text) for p in profiles(events, u)] for u in USERS}
    assert written == {
        SUBJECT: [("extractive", "Facts: Lives in Denver."), (GENERATOR, "LLM: Likes jazz.")],
        OTHER: [("extractive", "Facts: Has a cat.")],
        THIRD: [(GENERATOR, "LLM: Plays tennis.")],
    }
    # In the read model, the user's newer LLM profile replaced the extractive one.
    await project(topics, SummariesProjection())
    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None and (profile["generator"], profile["sequence"]) == (GENERATOR, 2)


async def test_a_crash_replay_whose_model_changed_its_mind_keeps_the_first_summary(
    topics: Settings, db: Any, model: FakeOpenAI
) -> None:
    model.answer("Lives in Denver", {"summary": "First: lives in Denver."})
    model.answer("moving to Boulder", {"summary": "First: moving to Boulder."})
    batch: list[Event] = [
        extracted("Lives in Denver"),
        ended("conv-move", ("user", "I am moving to Boulder next month."), days=1),
    ]
    async with OneBatch(topics, llm_processor(topics, model)) as runner:
        # Appended, then the process died before the checkpoint committed: the batch is
        # delivered again, and this time the model answers differently.
        await runner.apply(batch, commit=False)
        model.answer("Lives in Denver", {"summary": "Second: based in Denver."})
        model.answer("moving to Boulder", {"summary": "Second: relocating to Boulder."})
        await runner.apply(batch)

    # The same inputs give the same event ids: the log holds each id twice, first text first.
    events = await summaries(topics)
    texts: dict[Any, list[str]] = {}
    for event in events:
        texts.setdefault(event.id, []).append(event.data.text)
    assert sorted(texts.values()) == [
        ["First: lives in Denver.", "Second: based in Denver."],
        ["First: moving to Boulder.", "Second: relocating to Boulder."],
    ]
    # The read model applies an id once: the first text stays, live and on every rebuild.
    await project(topics, SummariesProjection())
    profile = await latest_profile(db, TENANT, SUBJECT)
    call = await conversation_summary(db, TENANT, "conv-move")
    assert profile is not None and profile["text"] == "First: lives in Denver."
    assert call is not None and call["text"] == "First: moving to Boulder."
    assert profile["generator"] == call["generator"] == GENERATOR


async def test_rebuilding_the_summaries_read_model_calls_no_model(
    topics: Settings, db: Any, model: FakeOpenAI
) -> None:
    model.answer("Allergic to penicillin", {"summary": PROFILE_TEXT})
    model.answer("I'd like a cleaning", {"summary": CALL_TEXT})
    async with EventLog(topics) as log:
        await log.append_many(phoned_in())
    await project(topics, llm_processor(topics, model))
    await project(topics, SummariesProjection())
    assert model.calls(CHAT) >= 2
    live = await snapshot(db, "summaries_v1", SummariesProjection.tables)
    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None and profile["generator"] == GENERATOR
    assert len(live["profiles"]) == 1 and len(live["conversation_summaries"]) == 2

    model.clear_log()
    model.fail("500")  # a rebuild that called the model would also show as fallbacks
    await project(topics, SummariesProjection(), version=2)
    assert model.requests == []
    assert await snapshot(db, "summaries_v2", SummariesProjection.tables) == live


async def test_an_empty_profile_costs_no_call_and_says_it_was_made_locally(
    topics: Settings, db: Any, model: FakeOpenAI
) -> None:
    model.answer("Lives in Denver", {"summary": "Lives in Denver."})
    city = extracted("Lives in Denver")
    async with OneBatch(topics, llm_processor(topics, model)) as runner:
        await runner.apply([city])
        await runner.apply([retracted(city.data.memory_id, days=1)])
    assert model.calls(CHAT) == 1
    written = [(p.data.generator, p.data.text) for p in profiles(await summaries(topics))]
    assert written == [(GENERATOR, "Lives in Denver."), ("extractive", "")]
