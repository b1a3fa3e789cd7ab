"""The LLM summariser without a network: how a model's answer is validated, what a request
carries (redacted), and when the processor picks it. Its calls, fallback and breaker run
against the fake OpenAI server in tests/integration/test_summaries_llm.py."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from projections.providers.exceptions import InvalidAnswer
from projections.summaries import SummaryProcessor
from projections.summaries.llm import (
    CONVERSATION_PROMPT,
    PROFILE_PROMPT,
    LLMSummariser,
    parse_answer,
)
from projections.summaries.summariser import (
    CONVERSATION_CHARS,
    PROFILE_CHARS,
    PROFILE_MEMORIES,
    ExtractiveSummariser,
    Summariser,
    ranked_memories,
)
from services.settings import Settings
from tests.unit.test_summaries import NOW, conversation, memory

LLM_SETTINGS = Settings(llm_model="small-model", openai_base_url="http://127.0.0.1:9/v1")


def answer(summary: object) -> str:
    return orjson.dumps({"summary": summary}).decode()


def summariser() -> LLMSummariser:
    return LLMSummariser.from_settings(LLM_SETTINGS)


def test_a_well_formed_answer_gives_its_summary_with_whitespace_folded() -> None:
    text = "Maria Lopez, allergic to penicillin,\n  lives in Boulder.  "
    assert parse_answer(answer(text), PROFILE_CHARS) == (
        "Maria Lopez, allergic to penicillin, lives in Boulder."
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no content"),
        ("", "no content"),
        ("this is {not json", "not JSON"),
        ('{"memories": []}', "'summary' string"),
        ('["a summary"]', "'summary' string"),
        ('{"summary": 42}', "'summary' string"),
        (answer(""), "empty"),
        (answer("   \n "), "empty|one paragraph"),
        (answer("Lives in Boulder.\n\nAllergic to penicillin."), "one paragraph"),
        (answer("- Lives in Boulder\n- Allergic to penicillin"), "one paragraph"),
        (answer("Reach her at [phone] after 5pm."), "placeholder"),
        (answer("Email on file: [email]."), "placeholder"),
    ],
)
def test_an_unusable_answer_is_an_invalid_answer(content: str | None, reason: str) -> None:
    with pytest.raises(InvalidAnswer, match=reason):
        parse_answer(content, PROFILE_CHARS)


def test_a_summary_over_the_extractive_bound_is_an_invalid_answer() -> None:
    for limit in (PROFILE_CHARS, CONVERSATION_CHARS):
        at_the_bound = "word " * (limit // 5)
        assert len(parse_answer(answer(at_the_bound), limit)) <= limit
        with pytest.raises(InvalidAnswer, match=f"over {limit}"):
            parse_answer(answer("x" * (limit + 1)), limit)


def test_the_llm_summariser_is_a_summariser_named_after_its_model() -> None:
    llm = summariser()
    assert isinstance(llm, Summariser)
    assert (llm.name, llm.version) == ("llm:small-model", "1")
    assert isinstance(llm.fallback, ExtractiveSummariser)
    with pytest.raises(ValueError, match="model name"):
        LLMSummariser(llm.client, "")
    with pytest.raises(ValueError, match="concurrency"):
        LLMSummariser(llm.client, "small-model", concurrency=0)


def test_a_profile_request_sends_the_strongest_memories_redacted() -> None:
    memories = [
        memory("Phone is (415) 555-0132", "identity", salience=0.8),
        memory("Email is dana.k@example.com", "identity", salience=0.8),
        memory("Allergic to penicillin", salience=0.9),
        *(memory(f"Weak fact {i}", salience=0.1) for i in range(PROFILE_MEMORIES)),
    ]
    ranked = ranked_memories(memories, NOW)
    messages = summariser().profile_request(ranked, NOW)
    assert messages[0] == {"role": "system", "content": PROFILE_PROMPT}
    sent = orjson.loads(str(messages[1]["content"]))
    assert sent["as_of"] == NOW.date().isoformat()
    assert len(sent["memories"]) == PROFILE_MEMORIES
    assert sent["memories"][0] == {
        "content": "Allergic to penicillin",
        "kind": "fact",
        "sector": "semantic",
        "date": NOW.date().isoformat(),
    }
    raw = str(messages[1]["content"])
    assert "[phone]" in raw and "[email]" in raw
    for secret in ("555-0132", "415", "dana.k", "example.com"):
        assert secret not in raw


def test_a_conversation_request_sends_the_turns_redacted() -> None:
    call = conversation(
        ("agent", "Bayview Dental, how can I help?"),
        ("user", "My card is 4111 1111 1111 1111 and my cell is (415) 555-0132."),
        ("user", "   "),
    )
    messages = summariser().conversation_request(call)
    assert messages[0] == {"role": "system", "content": CONVERSATION_PROMPT}
    sent = orjson.loads(str(messages[1]["content"]))
    assert sent["turns"] == [
        {"role": "agent", "text": "Bayview Dental, how can I help?"},
        {"role": "user", "text": "My card is [card] and my cell is [phone]."},
    ]


def test_the_processor_picks_the_llm_summariser_when_a_model_is_set() -> None:
    processor = SummaryProcessor.from_settings(
        LLM_SETTINGS.replace(summary_debounce_s=5.0, provider_concurrency=2)
    )
    assert isinstance(processor.summariser, LLMSummariser)
    assert processor.summariser.name == "llm:small-model"
    assert processor.summariser.concurrency == 2
    assert processor.debounce == timedelta(seconds=5)
    assert isinstance(SummaryProcessor.from_settings(Settings()).summariser, ExtractiveSummariser)
