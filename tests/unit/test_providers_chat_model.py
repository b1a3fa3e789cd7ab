"""How a chat model's calls run concurrently (``ChatModel.map_calls`` and ``run_call``),
for both its subclasses: at most ``concurrency`` at once in the model's own pool, results
in the items' order, the first error re-raised, small batches and ``concurrency == 1``
inline, and no deadlock when a pool thread asks for a batch itself. No request is sent:
the functions mapped are plain ones."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from projections.extraction.llm import LLMExtractor
from projections.summaries.llm import LLMSummariser
from services.settings import Settings

SETTINGS = Settings(llm_model="small-model", openai_base_url="http://127.0.0.1:9/v1")


class InFlight:
    """Counts the calls running at once; each call waits until ``group`` are running, so
    a pool of that many threads is seen full, and one larger would be seen over it."""

    def __init__(self, group: int) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.threads: list[str] = []
        self.barrier = threading.Barrier(group, timeout=10)

    def __call__(self, item: int) -> int:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.threads.append(threading.current_thread().name)
        try:
            self.barrier.wait()
            return item * item
        finally:
            with self.lock:
                self.now -= 1


@pytest.fixture
def extractor() -> Iterator[LLMExtractor]:
    model = LLMExtractor.from_settings(SETTINGS.replace(provider_concurrency=3))
    yield model
    model.close()


def test_a_batch_runs_concurrency_calls_at_a_time_in_order(extractor: LLMExtractor) -> None:
    calls = InFlight(3)
    assert extractor.map_calls(calls, list(range(9))) == [i * i for i in range(9)]
    assert calls.peak == 3
    assert all(name.startswith("llm") for name in calls.threads)


def test_the_pool_is_kept_between_batches_and_released_by_close(
    extractor: LLMExtractor,
) -> None:
    def thread(_: int) -> threading.Thread:
        return threading.current_thread()

    first = set(extractor.map_calls(thread, [1, 2, 3, 4]))
    second = set(extractor.map_calls(thread, [1, 2, 3, 4]))
    assert len(first | second) <= 3 and threading.current_thread() not in first
    extractor.close()
    assert not any(t.is_alive() for t in first | second)
    # A later batch starts a new pool.
    assert extractor.map_calls(lambda i: i + 1, [1, 2]) == [2, 3]


@pytest.mark.parametrize(
    ("concurrency", "items"), [(1, [1, 2, 3]), (3, [1]), (3, [])], ids=["one", "single", "none"]
)
def test_concurrency_one_and_a_single_item_run_inline(concurrency: int, items: list[int]) -> None:
    model = LLMExtractor.from_settings(SETTINGS.replace(provider_concurrency=concurrency))
    names = model.map_calls(lambda _: threading.current_thread().name, items)
    assert names == [threading.current_thread().name] * len(items)
    assert model._pool is None  # no thread was started


def test_the_first_error_in_order_is_raised_once_running_calls_are_done(
    extractor: LLMExtractor,
) -> None:
    lock = threading.Lock()
    running = [0]

    def fail_some(item: int) -> int:
        with lock:
            running[0] += 1
        try:
            if item in (1, 3):
                raise ValueError(f"item {item}")
            return item
        finally:
            with lock:
                running[0] -= 1

    with pytest.raises(ValueError, match="item 1"):
        extractor.map_calls(fail_some, [0, 1, 2, 3, 4, 5])
    assert running[0] == 0  # nothing left running behind the error
    assert extractor.map_calls(lambda i: i, [7, 8]) == [7, 8]  # the pool still serves


def test_a_batch_asked_from_a_pool_thread_runs_inline_instead_of_deadlocking(
    extractor: LLMExtractor,
) -> None:
    # Every pool thread is taken by an outer call before any asks for its inner batch:
    # submitted to the pool, the inner calls would wait for a thread that never frees.
    full = threading.Barrier(3, timeout=10)

    def outer(item: int) -> list[str]:
        full.wait()
        return extractor.map_calls(lambda _: threading.current_thread().name, [item] * 4)

    names = extractor.map_calls(outer, [1, 2, 3])
    assert all(len(set(inner)) == 1 for inner in names)


async def test_awaited_calls_share_the_pool_and_keep_the_event_loop_free() -> None:
    summariser = LLMSummariser.from_settings(SETTINGS.replace(provider_concurrency=2))
    try:
        calls = InFlight(2)
        results = await asyncio.gather(*(summariser.run_call(_bind(calls, i)) for i in range(6)))
        assert results == [i * i for i in range(6)]
        assert calls.peak == 2
        assert all(name.startswith("summary") for name in calls.threads)
        # With concurrency 1 too, the call runs in the pool, never on the event loop.
        one = LLMSummariser.from_settings(SETTINGS.replace(provider_concurrency=1))
        try:
            name = await one.run_call(lambda: threading.current_thread().name)
            assert name.startswith("summary") and name != threading.current_thread().name
        finally:
            one.close()
    finally:
        summariser.close()


def _bind(fn: Callable[[int], int], item: int) -> Callable[[], int]:
    return lambda: fn(item)
