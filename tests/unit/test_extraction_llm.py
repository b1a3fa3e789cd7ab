"""The LLM extractor through the real ``openai`` client against the fake OpenAI server:
golden transcripts, answer validation, redaction of what is sent, and the fallback to
the rules (recorded as such) when the model fails, times out or the breaker is open."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from projections.extraction.candidates import Candidate
from projections.extraction.llm import ANSWER_SCHEMA, LLMExtractor, parse_answer
from projections.providers.exceptions import InvalidAnswer
from projections.providers.openai_client import SEED
from projections.providers.resilience import Backoff, CircuitBreaker, Resilient
from schemas.events import ConversationEndedData
from tests.fakes.openai_server import CHAT, FakeOpenAI
from tests.unit.test_extraction_rules import GOLDEN, UPDATE, as_json, conversation, from_transcript

MODEL = "fake-model"
LLM_GOLDENS = sorted(p.name.split(".")[0] for p in GOLDEN.glob("*.llm_answer.json"))
# What each golden transcript says that must never reach the provider.
PII = {"family_booking": ["201 7788", "7788", "alvarez at gmail", "gmail dot com"]}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_s=1.0) as server:
        yield server


def extractor(
    fake: FakeOpenAI,
    *,
    retries: int = 2,
    failures: int = 100,
    clock: Clock | None = None,
    timeout: float = 5.0,
    concurrency: int = 4,
) -> LLMExtractor:
    client = openai.OpenAI(
        base_url=fake.base_url, api_key="sk-test", timeout=timeout, max_retries=0
    )
    calls = Resilient(
        "openai",
        "chat",
        retries=retries,
        backoff=Backoff(base_s=0.01, cap_s=0.02),
        breaker=CircuitBreaker(
            "openai", "chat", failures=failures, reset_s=30, clock=clock or Clock()
        ),
    )
    return LLMExtractor(client, MODEL, calls=calls, concurrency=concurrency)


def answer_of(name: str) -> str:
    return (GOLDEN / f"{name}.llm_answer.json").read_text()


def sent_transcript(fake: FakeOpenAI) -> dict[str, Any]:
    [request] = [r for r in fake.requests if r.path == CHAT][-1:]
    user = [m for m in request.body["messages"] if m["role"] == "user"]
    document: dict[str, Any] = json.loads(user[0]["content"])
    return document


# ----------------------------------------------------------------------- goldens


def test_there_are_enough_llm_goldens() -> None:
    assert len(LLM_GOLDENS) >= 3


@pytest.mark.parametrize("name", LLM_GOLDENS)
def test_llm_golden(fake: FakeOpenAI, name: str) -> None:
    fake.answer('"turns"', answer_of(name))
    data = from_transcript(name)
    result = extractor(fake).extract(data)
    assert (result.extractor, result.extractor_version) == (f"llm:{MODEL}", "1")
    actual = as_json(list(result.candidates))
    path = GOLDEN / f"{name}.llm_expected.json"
    if UPDATE:
        document = {"source": f"{name}.llm_answer.json", "candidates": actual}
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    assert actual == json.loads(path.read_text())["candidates"]

    # What was asked: one call, the whole transcript indexed, deterministic settings.
    assert fake.calls(CHAT) == 1
    [request] = fake.requests
    assert request.body["model"] == MODEL
    assert request.body["temperature"] == 0 and request.body["seed"] == SEED
    assert request.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "memories", "strict": True, "schema": ANSWER_SCHEMA},
    }
    sent = sent_transcript(fake)
    assert sent["call_date"] == data.started_at.date().isoformat()
    assert [t["index"] for t in sent["turns"]] == list(range(len(data.turns)))
    assert [t["role"] for t in sent["turns"]] == [t.role for t in data.turns]
    for secret in PII.get(name, []):
        assert secret not in request.raw


def test_pii_is_redacted_before_the_request_and_placeholders_never_become_memories(
    fake: FakeOpenAI,
) -> None:
    fake.answer('"turns"', answer_of("family_booking"))
    result = extractor(fake).extract(from_transcript("family_booking"))
    texts = [t["text"] for t in sent_transcript(fake)["turns"]]
    assert texts[7] == "[phone]" and texts[9] == "[email]"
    assert not any("[" in c.content for c in result.candidates)


@pytest.mark.parametrize("name", LLM_GOLDENS)
def test_a_failing_model_falls_back_to_the_rules_golden(fake: FakeOpenAI, name: str) -> None:
    fake.fail("500")
    result = extractor(fake, retries=2).extract(from_transcript(name))
    assert (result.extractor, result.extractor_version) == ("rules", "2")
    expected = json.loads((GOLDEN / f"{name}.expected.json").read_text())["candidates"]
    assert as_json(list(result.candidates)) == expected
    assert fake.calls(CHAT) == 3  # the first attempt and two retries


# -------------------------------------------------------------------- resilience


def test_a_malformed_answer_is_retried_and_the_second_answer_used(fake: FakeOpenAI) -> None:
    fake.answer('"turns"', answer_of("moved_city"))
    fake.fail("malformed", times=1)
    result = extractor(fake, retries=1).extract(from_transcript("moved_city"))
    assert result.extractor == f"llm:{MODEL}" and result.candidates
    assert fake.calls(CHAT) == 2


def test_an_answer_slower_than_the_timeout_falls_back(fake: FakeOpenAI) -> None:
    fake.answer('"turns"', answer_of("moved_city"))
    fake.fail("slow")
    result = extractor(fake, retries=1, timeout=0.2).extract(from_transcript("moved_city"))
    assert result.extractor == "rules"
    assert fake.calls(CHAT) == 2


def test_a_bad_request_is_not_retried(fake: FakeOpenAI) -> None:
    fake.fail("400")
    result = extractor(fake, retries=3).extract(from_transcript("moved_city"))
    assert result.extractor == "rules"
    assert fake.calls(CHAT) == 1


def test_the_breaker_falls_back_without_calling_and_recovers_to_the_model(
    fake: FakeOpenAI,
) -> None:
    clock = Clock()
    llm = extractor(fake, retries=0, failures=2, clock=clock)
    data = from_transcript("moved_city")
    fake.answer('"turns"', answer_of("moved_city"))
    fake.fail("500")
    assert [llm.extract(data).extractor for _ in range(2)] == ["rules", "rules"]
    assert fake.calls(CHAT) == 2
    # Open: the rules answer at once, the provider is left alone.
    assert llm.extract(data).extractor == "rules"
    assert fake.calls(CHAT) == 2 and llm.calls.breaker.state == "open"

    fake.recover()
    clock.now += 30
    assert llm.extract(data).extractor == f"llm:{MODEL}"
    assert llm.calls.breaker.state == "closed"
    assert fake.calls(CHAT) == 3


def test_a_batch_is_extracted_concurrently_and_returned_in_order(fake: FakeOpenAI) -> None:
    conversations = []
    for i in range(6):
        fake.answer(
            f"caller number {i}.",
            {"memories": [{"content": f"Is caller {i}", "sector": "semantic",
                           "kind": "fact", "salience": 0.5, "key": None, "turns": [1]}]},
        )  # fmt: skip
        conversations.append(
            conversation([("agent", "Hello?"), ("user", f"I am caller number {i}.")])
        )
    results = extractor(fake, concurrency=3).extract_many(conversations)
    assert [r.candidates[0].content for r in results] == [f"Is caller {i}" for i in range(6)]
    assert fake.calls(CHAT) == 6


def test_a_call_where_the_caller_says_nothing_costs_no_request(fake: FakeOpenAI) -> None:
    data = conversation([("agent", "Hello? Anyone there?"), ("user", "  ")])
    result = extractor(fake).extract(data)
    assert result.candidates == () and fake.calls(CHAT) == 0


# -------------------------------------------------------------------- validation


def memory(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "content": "Allergic to penicillin",
        "sector": "semantic",
        "kind": "fact",
        "salience": 0.9,
        "key": None,
        "turns": [1],
    }
    item.update(changes)
    return item


def parse(*items: Any, turns: int = 4) -> tuple[list[Candidate], int]:
    return parse_answer(json.dumps({"memories": list(items)}), turns)


@pytest.mark.parametrize(
    "content", [None, "", "this is {not json", "[]", '{"memory": []}', '{"memories": {}}']
)
def test_an_unusable_answer_is_an_invalid_answer(content: str | None) -> None:
    with pytest.raises(InvalidAnswer):
        parse_answer(content, 4)


@pytest.mark.parametrize(
    "item",
    [
        memory(sector="factual"),
        memory(kind="request"),
        memory(salience=1.2),
        memory(salience=-0.1),
        memory(content="  .  "),
        memory(content="x" * 301),
        memory(content="Phone number: [phone]"),
        memory(key="Home City"),
        memory(turns=[]),
        memory(turns=[4]),
        memory(turns=[-1, 2]),
        memory(turns=["one"]),
        "Allergic to penicillin",
        {"content": "Allergic to penicillin"},
    ],
)
def test_an_invalid_memory_is_dropped_and_counted(item: Any) -> None:
    candidates, dropped = parse(item, memory(content="Lives in Denver"))
    assert [c.content for c in candidates] == ["Lives in Denver"]
    assert dropped == 1


def test_valid_memories_follow_the_rules_extractors_conventions() -> None:
    candidates, dropped = parse(
        memory(content="Allergic to penicillin.", turns=[3, 1, 3]),
        memory(content="allergic to  Penicillin", turns=[2], salience=0.95),
        memory(content="Lives in Denver", key="home_city", turns=[1], sector="semantic"),
        memory(content="Lives in Boulder", key="home_city", turns=[3]),
    )
    assert dropped == 0
    assert [(c.content, c.turns, c.salience, c.key) for c in candidates] == [
        ("Allergic to penicillin", (1, 2, 3), 0.95, None),
        ("Lives in Boulder", (3,), 0.9, "home_city"),
    ]


def test_the_request_redacts_each_turn_and_skips_tool_turns() -> None:
    data = ConversationEndedData.model_validate(
        {
            "conversation_id": "c",
            "started_at": "2026-03-02T09:30:00Z",
            "status": "done",
            "turns": [
                {"role": "agent", "text": "Your number?", "offset_ms": 0},
                {"role": "user", "text": "It's (415) 555-0132", "offset_ms": 1},
                {"role": "tool", "text": "lookup ok", "offset_ms": 2},
            ],
        }
    )
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    messages = LLMExtractor(client, MODEL).request(data)
    sent = json.loads(str(messages[1]["content"]))
    assert sent == {
        "call_date": "2026-03-02",
        "turns": [
            {"index": 0, "role": "agent", "text": "Your number?"},
            {"index": 1, "role": "user", "text": "It's [phone]"},
        ],
    }
