"""The query service's pure parts: rate-limit buckets, tool payload parsing, answer text."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.errors import ApiError
from services.query.search import Hit
from services.query.tools import answer_text, elevenlabs_arguments, vapi_tool_calls
from services.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)
    assert limiter.acquire("other") == 0.0  # buckets are per key
    clock.now += 0.5
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0
    clock.now += 100  # refills only up to the burst
    assert [limiter.acquire("k") for _ in range(4)][-1] > 0


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert RateLimiter.retry_after(0.01) == "1"
    assert RateLimiter.retry_after(1.2) == "2"


def hit(content: str) -> Hit:
    at = datetime(2026, 3, 4, tzinfo=UTC)
    return Hit(uuid.uuid4(), content, "semantic", "fact", 0.5, {}, ("dense",), at, at, 0)


def test_answer_text_is_one_dated_line_or_says_nothing_matched() -> None:
    text = answer_text("dog", [hit("Has a dog\nnamed Biscuit"), hit("Lives in Leeds")])
    assert text == (
        "Known about this caller: Has a dog named Biscuit (2026-03-04); Lives in Leeds "
        "(2026-03-04)."
    )
    assert answer_text("zebra\n?", []) == 'No memories of this caller match "zebra ?".'
    long = answer_text("x", [hit("word " * 300)] * 5)
    assert len(long) <= 800 and "\n" not in long


def test_a_memory_found_with_the_turn_that_says_it_quotes_that_turn() -> None:
    quoted = replace(
        hit("Allergic to penicillin"),
        context=[
            {"conversation_id": "c1", "seq": 3, "speaker": "caller", "text": "Oh, and\nI'm"
             " allergic to penicillin, the rash thing."},
            {"conversation_id": "c1", "seq": 9, "speaker": "agent", "text": "Noted."},
        ],
    )  # fmt: skip
    assert answer_text("allergies?", [quoted]) == (
        "Known about this caller: Allergic to penicillin (2026-03-04; they said \"Oh, and I'm"
        ' allergic to penicillin, the rash thing.").'
    )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([], "$"),
        ({"caller_id": "+14155550123"}, "query"),
        ({"query": " ", "caller_id": "+14155550123"}, "query"),
        ({"query": "x", "caller_id": 5}, "caller_id"),
        ({"query": "x"}, "caller_id"),
        ({"query": "x", "conversation_id": ["c"]}, "conversation_id"),
        ({"query": "x", "caller_id": "+1415\x00"}, "caller_id"),
        ({"query": "x\x00", "caller_id": "+14155550123"}, "query"),
        ({"query": "x" * 2001, "caller_id": "+14155550123"}, "query"),
    ],
)
def test_elevenlabs_tool_bodies_are_checked(body: Any, path: str) -> None:
    with pytest.raises(ApiError) as refused:
        elevenlabs_arguments(body)
    assert refused.value.status == 422 and refused.value.path == path


def test_vapi_tool_calls_accept_both_lists_and_string_arguments() -> None:
    message = vapi_tool_calls(
        {
            "message": {
                "type": "tool-calls",
                "call": {"id": "call-1"},
                "customer": {"number": "+14155550123"},
                "toolCallList": [{"id": "a", "name": "s", "arguments": '{"query": "q"}'}],
                "toolWithToolCallList": [
                    {"toolCall": {"id": "a", "function": {"name": "s"}}},
                    {"toolCall": {"id": "b", "function": {"name": "s", "arguments": {"x": 1}}}},
                ],
            }
        }
    )
    assert [(c.id, c.arguments) for c in message.calls] == [
        ("a", {"query": "q"}),
        ("b", {"x": 1}),
    ]
    assert (message.number, message.call_id) == ("+14155550123", "call-1")


@pytest.mark.parametrize(
    "message",
    [
        {"type": "status-update"},
        {"type": "tool-calls"},
        {"type": "tool-calls", "toolCallList": [{"name": "s"}]},
        {"type": "tool-calls", "toolCallList": [{"id": "a", "arguments": "{nope"}]},
        {"type": "tool-calls", "toolCallList": [{"id": "a", "arguments": [1]}]},
        {"type": "tool-calls", "toolCallList": 5},
        {"type": "tool-calls", "toolCallList": "a"},
        {"type": "tool-calls", "toolWithToolCallList": {"toolCall": {}}},
        {"type": "tool-calls", "call": "x", "toolCallList": [{"id": "a", "arguments": {}}]},
        {"type": "tool-calls", "toolCallList": [{"id": str(i)} for i in range(17)]},
    ],
)
def test_vapi_messages_that_are_not_tool_calls_are_refused(message: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as refused:
        vapi_tool_calls({"message": message})
    assert refused.value.status == 422
