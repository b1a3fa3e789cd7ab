"""Bounded resources, the pure parts: caches that outlive a database outage for a while,
the failed-authentication limiter, read-your-writes caps, what counts as "database down"."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import PoolTimeout
from starlette.requests import Request

from services.database import unavailable
from services.errors import ApiError
from services.expiring import Expiring
from services.query.consistency import MAX_POSITIONS, WaitSlots, parse_positions
from services.ratelimit import FailedAuthentications


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Database:
    """What a cache loads from: a value, or down (raising what psycopg raises)."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self.down = False
        self.loads = 0

    async def load(self) -> str | None:
        self.loads += 1
        if self.down:
            raise PoolTimeout("couldn't get a connection after 2.00 sec")
        return self.value


async def test_a_cached_value_is_reloaded_after_its_ttl_while_the_database_answers() -> None:
    clock, database = Clock(), Database("key-1")
    cache: Expiring[str, str | None] = Expiring(5.0, stale_s=300.0, clock=clock)
    assert await cache.get("k", database.load) == "key-1"
    database.value = None  # revoked
    clock.now += 4.9
    assert await cache.get("k", database.load) == "key-1"  # within the TTL
    clock.now += 0.2
    assert await cache.get("k", database.load) is None  # revoked within the TTL
    assert database.loads == 2


async def test_the_last_value_is_served_while_the_database_is_down_for_a_bounded_time() -> None:
    clock, database = Clock(), Database("key-1")
    cache: Expiring[str, str | None] = Expiring(5.0, stale_s=300.0, clock=clock)
    await cache.get("k", database.load)
    database.down = True
    clock.now += 60
    assert await cache.get("k", database.load) == "key-1"
    # One failed load per TTL, not one per request.
    assert await cache.get("k", database.load) == "key-1"
    assert database.loads == 2
    clock.now += 5
    assert await cache.get("k", database.load) == "key-1"
    assert database.loads == 3
    clock.now = 100 + 5 + 300  # older than TTL + staleness: no longer vouched for
    with pytest.raises(PoolTimeout):
        await cache.get("k", database.load)


async def test_a_load_error_without_a_value_to_fall_back_on_is_raised() -> None:
    database = Database("key-1")
    database.down = True
    stale: Expiring[str, str | None] = Expiring(5.0, stale_s=300.0)
    with pytest.raises(PoolTimeout):
        await stale.get("k", database.load)
    clock = Clock()
    strict: Expiring[str, str | None] = Expiring(5.0, clock=clock)  # stale_s=0
    database.down = False
    await strict.get("k", database.load)
    database.down = True
    clock.now += 6
    with pytest.raises(PoolTimeout):
        await strict.get("k", database.load)


async def test_only_database_unavailability_falls_back_to_the_last_value() -> None:
    clock = Clock()
    cache: Expiring[str, str] = Expiring(5.0, stale_s=300.0, clock=clock)

    async def good() -> str:
        return "v"

    async def broken() -> str:
        raise psycopg.ProgrammingError("syntax error")

    await cache.get("k", good)
    clock.now += 6
    with pytest.raises(psycopg.ProgrammingError):
        await cache.get("k", broken)


def request_from(address: str, tenant: str | None = None) -> Request:
    return Request(
        {
            "type": "http",
            "headers": [],
            "client": (address, 40_000),
            "path_params": {"tenant": tenant} if tenant else {},
        }
    )


def test_a_client_failing_to_authenticate_too_often_is_refused_for_a_window() -> None:
    clock = Clock()
    limiter = FailedAuthentications(3, 60.0, clock=clock)
    guesser = request_from("203.0.113.9", "acme")
    for _ in range(2):
        limiter.failed(guesser)
        limiter.check(guesser)
    limiter.failed(guesser)
    with pytest.raises(ApiError) as refused:
        limiter.check(guesser)
    assert refused.value.status == 429 and refused.value.code == "too_many_auth_failures"
    assert refused.value.headers["Retry-After"] == "60"
    # Another address, or the same address for another tenant, is not affected.
    limiter.check(request_from("203.0.113.10", "acme"))
    limiter.check(request_from("203.0.113.9", "globex"))
    clock.now += 60
    limiter.check(guesser)  # the block is over, with a clean count
    limiter.failed(guesser)
    limiter.check(guesser)


def test_failures_spread_wider_than_the_window_never_block() -> None:
    clock = Clock()
    limiter = FailedAuthentications(3, 60.0, clock=clock)
    client = request_from("198.51.100.7")
    for _ in range(10):
        limiter.failed(client)
        limiter.failed(client)
        limiter.check(client)
        clock.now += 61


def test_a_key_holds_at_most_its_wait_slots_and_gets_them_back() -> None:
    slots = WaitSlots(2)
    with slots.hold("key-a"), slots.hold("key-a"):
        with pytest.raises(ApiError) as refused, slots.hold("key-a"):
            pass
        assert refused.value.status == 429 and refused.value.code == "too_many_waits"
        assert refused.value.headers["Retry-After"] == "1"
        with slots.hold("key-b"):  # per key
            pass
    with slots.hold("key-a"), slots.hold("key-a"):  # released, even after a refusal
        pass


def test_more_positions_than_the_cap_are_a_422() -> None:
    tokens = ",".join(f"memstream.conversations:{p}:{p}" for p in range(MAX_POSITIONS))
    assert len(parse_positions(tokens, "memstream")) == MAX_POSITIONS
    with pytest.raises(ApiError) as refused:
        parse_positions(tokens + ",memstream.memories:0:1", "memstream")
    assert refused.value.status == 422 and refused.value.code == "too_many_positions"
    assert refused.value.path == "after"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PoolTimeout("couldn't get a connection after 2.00 sec"), True),
        (psycopg.OperationalError("consuming input failed: server closed the connection"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.errors.TooManyConnections("too many clients"), True),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (psycopg.errors.UndefinedTable("relation does not exist"), False),
        (ValueError("not a database error"), False),
    ],
)
def test_only_connection_level_errors_mean_the_database_is_unavailable(
    error: BaseException, expected: bool
) -> None:
    assert unavailable(error) is expected
