"""A live call's state (services/live/state.py): folding turns once, topic shifts on
vectors, when a call is reconstructed or dropped, and the table value's round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas import Turn
from services.live.state import MAX_OFFERED, SHIFT_COSINE, LiveCall, LiveCalls, cosine

STARTED = datetime(2026, 11, 19, 10, 20, tzinfo=UTC)


def a_call(**changes: object) -> LiveCall:
    values: dict[str, object] = {
        "conversation_id": "call-1",
        "tenant": "acme",
        "subject": "acme/+14155550123",
        "platform": "vapi",
        "started_at": STARTED,
        "last_event_at": STARTED,
        "seen_at": 1000.0,
        **changes,
    }
    return LiveCall.model_validate(values)


def test_a_turn_is_folded_once() -> None:
    call = a_call()
    turn = Turn(role="user", text="Can we move it to Friday?", offset_ms=1000)
    assert call.add_turn("e1/0", turn)
    assert not call.add_turn("e1/0", turn)  # redelivered
    assert call.add_turn("e2/0", turn)  # said again: another turn
    assert len(call.turns) == 2


def test_the_first_turn_opens_a_topic_and_a_far_one_opens_the_next() -> None:
    call = a_call()
    assert not call.joins_topic([1.0, 0.0, 0.0])  # the first topic
    assert call.topics == 1
    near = [0.9, 0.3, 0.0]
    assert cosine(call.topic, near) >= SHIFT_COSINE
    assert call.joins_topic(near)
    assert call.topic_turns == 2 and call.topic == [0.95, 0.15, 0.0]  # the mean
    assert not call.joins_topic([0.0, 0.0, 1.0])
    assert call.topics == 2 and call.topic == [0.0, 0.0, 1.0]


def test_offered_hits_are_kept_once_and_bounded() -> None:
    call = a_call()
    call.offer(["a", "b"])
    call.offer(["b", "c"])
    assert call.offered == ["a", "b", "c"]
    call.offer([str(i) for i in range(MAX_OFFERED + 10)])
    assert len(call.offered) == MAX_OFFERED


def test_a_silent_call_with_turns_and_no_report_is_due_for_reconstruction() -> None:
    call = a_call()
    assert not call.due_for_reconstruction(5000.0, 900.0)  # no turns: nothing to rebuild
    call.add_turn("e1/0", Turn(role="user", text="Hello there", offset_ms=0))
    assert not call.due_for_reconstruction(1899.0, 900.0)
    assert call.due_for_reconstruction(1900.0, 900.0)
    call.ended = "hung-up"  # hung up, and still no report
    assert call.due_for_reconstruction(1900.0, 900.0)
    call.ended, call.ended_at = "reported", 1500.0
    assert not call.due_for_reconstruction(1900.0, 900.0)
    assert not call.expired(1799.0, 300.0) and call.expired(1800.0, 300.0)


def test_a_call_without_turns_is_dropped_after_a_day() -> None:
    call = a_call()
    assert not call.expired(1000.0 + 86399, 300.0)
    assert call.expired(1000.0 + 86400, 300.0)


def test_a_reconstruction_ends_at_the_last_live_event_or_turn() -> None:
    call = a_call(last_event_at=STARTED + timedelta(seconds=30))
    call.add_turn("e1/0", Turn(role="user", text="Hi", offset_ms=45_000))
    assert call.ended_at_platform == STARTED + timedelta(seconds=45)


def test_the_table_value_round_trips() -> None:
    calls = LiveCalls(calls={"call-1": a_call()})
    calls.calls["call-1"].add_turn("e1/0", Turn(role="user", text="Friday works", offset_ms=5))
    calls.calls["call-1"].joins_topic([0.5, 0.5])
    again = LiveCalls.loads(calls.dumps())
    assert again == calls
    assert LiveCalls.loads(None) == LiveCalls() == LiveCalls.loads(b"")


def test_the_next_due_time_is_the_earliest_of_reconstruction_and_expiry() -> None:
    call = a_call()
    assert call.next_due(900.0, 300.0) == 1000.0 + 86400  # no turns: dropped after a day
    call.add_turn("e1/0", Turn(role="user", text="Hello there", offset_ms=0))
    assert call.next_due(900.0, 300.0) == 1900.0  # reconstructed if nothing else comes
    assert not call.due_for_reconstruction(1899.9, 900.0)
    assert call.due_for_reconstruction(1900.0, 900.0)
    call.ended, call.ended_at = "reported", 1500.0
    assert call.next_due(900.0, 300.0) == 1800.0  # dropped a grace period after the end
    assert call.expired(1800.0, 300.0)
