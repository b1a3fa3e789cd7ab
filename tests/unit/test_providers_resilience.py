"""Provider resilience: backoff bounds, breaker transitions on a fake clock, retries, and
which errors of the real ``openai`` client (talking to the fake server) are retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest

from projections.providers.exceptions import CircuitOpen, InvalidAnswer, ProviderUnavailable
from projections.providers.resilience import (
    Backoff,
    CircuitBreaker,
    Resilient,
    is_retryable,
)
from tests.fakes.openai_server import CHAT, FakeOpenAI


class Clock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing(times: int, error: Exception) -> tuple[Callable[[], str], list[int]]:
    """A call that raises `error` `times` times, then answers "ok"; and its call count."""
    count = [0]

    def call() -> str:
        count[0] += 1
        if count[0] <= times:
            raise error
        return "ok"

    return call, count


# ----------------------------------------------------------------------- backoff


def test_backoff_ceiling_doubles_from_the_base_and_stops_at_the_cap() -> None:
    backoff = Backoff(base_s=0.25, cap_s=3.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.ceiling(10_000) == 3.0  # no overflow for absurd attempt numbers


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8])
def test_full_jitter_delays_stay_within_zero_and_the_ceiling(attempt: int) -> None:
    backoff = Backoff(base_s=0.1, cap_s=2.0)
    assert backoff.delay(attempt, lambda: 0.0) == 0.0
    assert backoff.delay(attempt, lambda: 0.5) == pytest.approx(backoff.ceiling(attempt) / 2)
    delays = [backoff.delay(attempt) for _ in range(500)]
    assert all(0.0 <= d <= backoff.ceiling(attempt) for d in delays)
    # Full jitter spreads delays over the whole range, not around the ceiling.
    assert (
        min(delays) < backoff.ceiling(attempt) * 0.2 < backoff.ceiling(attempt) * 0.8 < max(delays)
    )


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base_s=0)
    with pytest.raises(ValueError):
        Backoff(base_s=2, cap_s=1)
    with pytest.raises(ValueError):
        Backoff().ceiling(0)


# ----------------------------------------------------------------------- breaker


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", "op", failures=3, reset_s=10, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # a success in between resets the count
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed"
    breaker.acquire()
    breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as refused:
        breaker.acquire()
    assert refused.value.retry_in_s == pytest.approx(10)
    assert refused.value.reason == "breaker_open"


def test_an_open_breaker_lets_one_trial_through_after_the_reset_time_and_closes_on_success() -> (
    None
):
    clock = Clock()
    breaker = CircuitBreaker("p", "op", failures=1, reset_s=30, clock=clock)
    breaker.failure()
    clock.now += 29.9
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    clock.now += 0.1
    assert breaker.state == "half_open"
    breaker.acquire()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.acquire()  # everyone else waits for the trial's outcome
    breaker.success()
    assert breaker.state == "closed"
    breaker.acquire()
    breaker.acquire()


def test_a_failed_trial_opens_the_breaker_for_another_full_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", "op", failures=5, reset_s=30, clock=clock)
    for _ in range(5):
        breaker.failure()
    clock.now += 30
    breaker.acquire()
    breaker.failure()  # one failure is enough in half-open
    assert breaker.state == "open"
    clock.now += 29
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    clock.now += 1
    breaker.acquire()


# ----------------------------------------------------------------------- resilient


def resilient(
    retries: int, failures: int = 100, clock: Clock | None = None
) -> tuple[Resilient, list[float]]:
    slept: list[float] = []
    calls = Resilient(
        "p",
        "op",
        retries=retries,
        backoff=Backoff(base_s=1.0, cap_s=4.0),
        breaker=CircuitBreaker("p", "op", failures=failures, reset_s=60, clock=clock or Clock()),
        sleep=slept.append,
        uniform=lambda: 0.999,
    )
    return calls, slept


def test_retryable_errors_are_retried_with_growing_backoff_until_success() -> None:
    calls, slept = resilient(retries=3)
    call, count = failing(2, TimeoutError("slow"))
    assert calls.call(call) == "ok"
    assert count[0] == 3
    assert slept == [pytest.approx(0.999), pytest.approx(1.998)]


def test_exhausted_retries_raise_provider_unavailable_with_the_last_error() -> None:
    calls, slept = resilient(retries=2)
    call, count = failing(10, InvalidAnswer("not json"))
    with pytest.raises(ProviderUnavailable) as raised:
        calls.call(call)
    assert raised.value.reason == "retries_exhausted"
    assert isinstance(raised.value.__cause__, InvalidAnswer)
    assert count[0] == 3 and len(slept) == 2


def test_an_error_not_worth_retrying_is_not_retried() -> None:
    calls, slept = resilient(retries=5)
    call, count = failing(10, ValueError("a bug, not an outage"))
    with pytest.raises(ProviderUnavailable) as raised:
        calls.call(call)
    assert raised.value.reason == "not_retryable"
    assert count[0] == 1 and slept == []


def test_an_open_breaker_makes_no_call_and_recovers_after_the_reset_time() -> None:
    clock = Clock()
    calls, _ = resilient(retries=1, failures=2, clock=clock)
    for _ in range(2):
        call, _count = failing(10, ConnectionError("down"))
        with pytest.raises(ProviderUnavailable):
            calls.call(call)
    call, count = failing(0, ConnectionError("never raised"))
    with pytest.raises(CircuitOpen):
        calls.call(call)
    assert count[0] == 0
    clock.now += 60
    assert calls.call(call) == "ok"
    assert calls.breaker.state == "closed"


# ----------------------------------------------- errors of the real client, classified


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_s=1.0) as server:
        yield server


def chat(fake: FakeOpenAI) -> Exception | None:
    client = openai.OpenAI(base_url=fake.base_url, api_key="k", timeout=0.3, max_retries=0)
    try:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize(
    ("failure", "retryable"),
    [("500", True), ("429", True), ("slow", True), ("400", False)],
)
def test_the_clients_errors_are_classified(fake: FakeOpenAI, failure: str, retryable: bool) -> None:
    fake.fail(failure, times=1, path=CHAT)
    error = chat(fake)
    assert error is not None
    assert is_retryable(error) is retryable
    assert chat(fake) is None  # the failure was injected once
    assert fake.calls(CHAT) == 2


def test_an_unreachable_endpoint_is_retryable() -> None:
    with FakeOpenAI() as server:
        url = server.base_url
    client = openai.OpenAI(base_url=url, api_key="k", timeout=0.5, max_retries=0)
    with pytest.raises(openai.APIConnectionError) as raised:
        client.embeddings.create(model="m", input=["x"])
    assert is_retryable(raised.value)
