"""streams.backoff: ceilings, jitter bounds, and attempts() waiting on an injected sleep."""

from __future__ import annotations

import pytest

from streams.backoff import Backoff


def test_exponential_ceiling_doubles_from_the_base_and_stops_at_the_cap() -> None:
    backoff = Backoff(base_s=0.2, cap_s=5.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff.ceiling(10_000) == 5.0  # no overflow for absurd attempt numbers


def test_linear_ceiling_grows_by_the_base() -> None:
    backoff = Backoff(base_s=0.2, cap_s=0.8, growth="linear")
    assert [backoff.ceiling(n) for n in range(1, 6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8])


@pytest.mark.parametrize("attempt", [1, 2, 4, 9])
def test_jitter_stays_within_its_range(attempt: int) -> None:
    full = Backoff(base_s=0.1, cap_s=2.0, jitter="full")
    equal = Backoff(base_s=0.1, cap_s=2.0, jitter="equal")
    none = Backoff(base_s=0.1, cap_s=2.0, jitter="none")
    ceiling = full.ceiling(attempt)
    assert full.delay(attempt, lambda: 0.0) == 0.0
    assert full.delay(attempt, lambda: 0.5) == pytest.approx(ceiling / 2)
    assert equal.delay(attempt, lambda: 0.0) == pytest.approx(ceiling / 2)
    assert equal.delay(attempt, lambda: 0.999999) == pytest.approx(ceiling)
    assert none.delay(attempt, lambda: 0.3) == ceiling
    assert all(0 <= full.delay(attempt) <= ceiling for _ in range(200))
    assert all(ceiling / 2 <= equal.delay(attempt) <= ceiling for _ in range(200))


def test_nonsense_is_refused() -> None:
    for kwargs in ({"base_s": 0}, {"base_s": -1}, {"base_s": 2, "cap_s": 1}):
        with pytest.raises(ValueError):
            Backoff(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Backoff(jitter="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Backoff(growth="quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Backoff().ceiling(0)
    with pytest.raises(ValueError):
        Backoff().attempts(0)


class Sleeps:
    """An async sleep that only records what it was asked to wait."""

    def __init__(self) -> None:
        self.waited: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.waited.append(delay)


async def test_attempts_wait_between_attempts_only() -> None:
    sleep = Sleeps()
    backoff = Backoff(base_s=0.2, cap_s=0.8, jitter="none", growth="linear")
    seen = [attempt async for attempt in backoff.attempts(5, sleep=sleep)]
    assert seen == [1, 2, 3, 4, 5]
    assert sleep.waited == pytest.approx([0.2, 0.4, 0.6, 0.8])  # none before 1, none after 5


async def test_attempts_stop_waiting_when_the_loop_breaks() -> None:
    sleep = Sleeps()
    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter="full")
    async for attempt in backoff.attempts(sleep=sleep, uniform=lambda: 0.5):
        if attempt == 3:
            break
    assert sleep.waited == [0.5, 1.0]


async def test_attempts_without_a_limit_go_on() -> None:
    sleep = Sleeps()
    backoff = Backoff(base_s=0.1, cap_s=0.4, jitter="none")
    attempts = backoff.attempts(sleep=sleep)
    assert [await anext(attempts) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert sleep.waited == pytest.approx([0.1, 0.2, 0.4, 0.4, 0.4])
