"""Property tests of the services over HTTP, in process: what they share.

The routes are driven from sync tests: hypothesis runs the examples, each example drives
the loop the async fixtures (app, producer, client) were created on (``fixture_loop``),
and the log is read once, after the last example, to compare with what the answers
reported (:class:`Ledger`). ``@given`` decorates an inner function (:func:`run_property`),
so hypothesis never sees the function-scoped fixtures (one app and one topic set for all
the examples of a test, on purpose).

An exception escaping an app (what a server answers as a 500) propagates out of httpx's
ASGITransport and fails the example with the service's own traceback.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from schemas import ConversationStarted, decode_event
from services.settings import Settings
from streams.offsets import partitions_of, standalone_consumer
from streams.topics import LOGICAL_TOPICS, Topics
from tests.helpers import read_topic

__all__ = [
    "NASTY",
    "Ledger",
    "appended",
    "assert_error_body",
    "assert_refused",
    "fixture_loop",
    "json_scalars",
    "json_values",
    "mutations_of",
    "paths_of",
    "property_settings",
    "run_property",
    "value_at",
]


@pytest.fixture
async def fixture_loop() -> asyncio.AbstractEventLoop:
    """The loop the async fixtures (app, producer, client) live on, for sync tests to drive."""
    return asyncio.get_running_loop()


def property_settings(max_examples: int, *, derandomize: bool = False) -> hypothesis_settings:
    """Examples of one property test; no deadline (the broker sets the pace).

    ``derandomize``: the same examples on every run (a fixed seed, no example database),
    for runs kept small enough to be a fixed cost of the suite.
    """
    return hypothesis_settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=derandomize,
        database=None if derandomize else hypothesis_settings.default.database,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def run_property(
    example: Callable[..., None],
    key: str,
    settings: hypothesis_settings,
    **strategies: st.SearchStrategy[Any],
) -> None:
    """Run ``example`` under hypothesis, with a database key of its own (``key``).

    Inner functions with the same source have the same key in hypothesis' example
    database: without ``key`` in it, a failure saved for one route would be replayed
    against the others. (Hypothesis' pytest plugin sets the same attribute to tell the
    cases of a parametrized test apart.)
    """
    example._hypothesis_internal_add_digest = key.encode()  # type: ignore[attr-defined]
    settings(given(**strategies)(example))()


#: Values that break naive code: empty and blank strings, control characters, numbers
#: at the edges of every range, and every JSON type.
NASTY = [
    "",
    " ",
    "\x00",
    "\n",
    "x" * 500,
    "2025-13-45T99:99:99",
    "+1",
    "NaN",
    0,
    -1,
    1,
    0.5,
    -0.0,
    1e15,
    -1e15,
    1e300,
    -1e300,
    1.7976931348623157e308,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    True,
    False,
    None,
    [],
    {},
    [None],
    {"": None},
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(document: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """The path of every value inside a JSON document (keys and list indexes)."""
    found: list[tuple[str | int, ...]] = []
    children = (
        document.items()
        if isinstance(document, dict)
        else enumerate(document)
        if isinstance(document, list)
        else []
    )
    for key, value in children:
        found.append((*prefix, key))
        found += paths_of(value, (*prefix, key))
    return found


def value_at(document: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


@st.composite
def mutations_of(
    draw: st.DrawFn, document: Any, values: st.SearchStrategy[Any], max_changes: int = 3
) -> Any:
    """A copy of ``document`` with 0 to ``max_changes`` of its values deleted or replaced by
    one of ``values``: mostly right, wrong in a place or two (what gets past the first
    checks to the ones after them)."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(min_value=0, max_value=max_changes))):
        paths = paths_of(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = value_at(document, path[:-1])
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            # Copied: a drawn list or object may be changed by a later mutation.
            parent[path[-1]] = copy.deepcopy(draw(values))
    return document


def _error_of(response: httpx.Response) -> dict[str, Any]:
    """The body's error, in memstream's shape: ``{"error": {"code", "message", "path"?}}``."""
    assert response.headers["content-type"] == "application/json", response.headers
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error.get("path", ""), str), error
    return dict(error)


def assert_error_body(response: httpx.Response) -> dict[str, Any]:
    """A 4xx in memstream's error shape."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    return _error_of(response)


def assert_refused(
    response: httpx.Response, status: int, code: str, path: str | None = None
) -> dict[str, Any]:
    """The response is a refusal with this status and code, in the documented JSON shape."""
    assert response.status_code == status, response.text
    error = _error_of(response)
    assert error["code"] == code, error
    if path is not None:
        assert error.get("path") == path, error
    return error


async def appended(settings: Settings) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record in any of the test's topics (conversations, memories, ..., dlq).

    The partitions are assigned before their offsets are asked for (without that,
    aiokafka waits ~0.5 s for metadata on every call), and only topics that hold
    something are read.
    """
    bootstrap = settings.require_kafka()
    partitions = await partitions_of(bootstrap, Topics(settings.topic_prefix).all())
    assert len(partitions) == len(LOGICAL_TOPICS) * settings.partitions, partitions
    async with standalone_consumer(bootstrap) as consumer:
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    busy = sorted({tp.topic for tp in partitions if ends[tp] > starts[tp]})
    return [record for topic in busy for record in await read_topic(settings, topic)]


def _started_call(body: bytes) -> str:
    """The call a briefing answer (ElevenLabs initiation, Vapi assistant-request) started."""
    document = orjson.loads(body)
    if "call_sid" in document:
        return str(document["call_sid"])
    return str(document["message"]["call"]["id"])


@dataclass
class Ledger:
    """What the answers of an ingest route say was appended, to compare with the log."""

    platform: str
    positions: dict[str, str] = field(default_factory=dict)  # topic:partition:offset -> id
    started_calls: set[str] = field(default_factory=set)  # answered with a briefing
    statuses: Counter[int] = field(default_factory=Counter)

    def record(self, body: bytes, response: httpx.Response) -> None:
        """Never a 5xx; a refusal is a 4xx in the error shape; a 200 says what it appended.

        A briefing answer (the call-start webhooks) gives no position: its
        conversation.started is counted by the call it started.
        """
        self.statuses[response.status_code] += 1
        assert response.status_code < 500, response.text
        if response.status_code != 200:
            assert_error_body(response)
            return
        answer = response.json()
        if "events" not in answer:
            assert (
                answer.get("type") == "conversation_initiation_client_data"
                or "assistantId" in answer
            ), answer
            self.started_calls.add(_started_call(body))
            return
        fresh = [e for e in answer["events"] if e["position"] is not None]
        assert len(answer["events"]) - answer["duplicates"] == len(fresh), answer
        for event in fresh:
            assert event["position"] not in self.positions, answer
            self.positions[event["position"]] = event["id"]

    async def check_log(self, settings: Settings, *others: Ledger) -> None:
        """The log holds exactly what this ledger's (and ``others``') 200s reported.

        Every reported position holds the reported event; every other record is the
        conversation.started of a call answered with a briefing, one per call.
        """
        ledgers = (self, *others)
        reported = {p: i for ledger in ledgers for p, i in ledger.positions.items()}
        started = {call for ledger in ledgers for call in ledger.started_calls}
        in_log = {f"{r.topic}:{r.partition}:{r.offset}": r for r in await appended(settings)}
        assert {p: str(decode_event(in_log[p].value).id) for p in reported if p in in_log} == (
            reported
        )
        unreported = [decode_event(r.value) for p, r in in_log.items() if p not in reported]
        assert all(isinstance(e, ConversationStarted) for e in unreported), unreported
        assert sorted(e.data.conversation_id for e in unreported) == sorted(started)
