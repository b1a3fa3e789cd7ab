"""No input makes either service fail: property tests of both HTTP apps, in process.

- schemathesis generates requests from each app's own OpenAPI document (the one it
  serves, checked in under docs/openapi/): valid by the document and violating it,
  sent with valid credentials and with bad or missing ones, with hostile values in the
  parameters the routes read raw (pages, cursors, read-your-writes positions);
- hypothesis sends the agent tools every kind of body: arbitrary JSON, and Vapi
  ``tool-calls`` messages and ElevenLabs tool bodies of the right outline with wrong
  types, invalid JSON, control characters and huge values;
- every REST route gets hostile path parameters (NUL, very long, unicode, ``..``), the
  paged routes forged cursors, the ingest routes values nested as deep as JSON parsing
  allows and events over a log record's size.

Each answer is below 500, and each non-2xx is memstream's JSON error body
(``{"error": {"code", "message"}}``). After the ingest runs the log holds exactly the
events the 200s reported, and nothing from a refused request.

In this folder for the golden corpus (conftest.py): searches find memories and passages,
so the tool answers are built from real hits. The examples are few and fixed
(derandomised): the module is a fixed cost of the suite, a few seconds per test; a longer
run is ``MEMSTREAM_PROPERTY_EXAMPLES=1000 pytest tests/integration/query/...``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import assume
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.generation.case import Case

from schemas import encode_event
from services import tenants
from services.ingest import openapi as ingest_openapi
from services.query.app import create_app
from services.settings import Settings
from streams.producer import MAX_RECORD_BYTES
from tests.helpers import call_events
from tests.integration.http_properties import (
    Ledger,
    appended,
    assert_error_body,
    assert_refused,
    fixture_loop,
    json_values,
    mutations_of,
    property_settings,
    run_property,
    value_at,
)
from tests.integration.ingest_fixtures import (
    ROUTES,
    SECRETS,
    ingest,
    payload,
    signed,
    tenant,
)
from tests.integration.query.corpus import EMBEDDER, SUBJECT, TENANT

__all__ = ["fixture_loop", "ingest", "tenant"]  # fixtures used by name below

EXAMPLES = int(os.environ.get("MEMSTREAM_PROPERTY_EXAMPLES", "60"))
SETTINGS = property_settings(EXAMPLES, derandomize=True)

USER = SUBJECT.partition("/")[2]
PHONE = USER  # the corpus caller's number: tool calls that name it find memories
WRONG_KEY = "msk_aaaaaaaaaaaa_" + "x" * 43
CREDENTIAL_HEADERS = {
    "authorization",
    "x-vapi-secret",
    "x-signature",
    "x-timestamp",
    "elevenlabs-signature",
    "x-retell-signature",
}
PLATFORM_OF = {template: platform for platform, template in ROUTES.items()}

#: Strings that break naive code: NUL and control characters, direction marks, the
#: edges of every length limit, numbers and paths where text is expected.
NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "food\x00",
    "\x01\x1f\x7f",
    "\n\r\t",
    "\u2028",
    "\u202e",
    "\ufeff",
    "🙂" * 50,
    "x" * 257,
    "x" * 2001,
    "x" * 20_000,
    "9" * 5000,
    "²",
    "٣",
    "-1",
    "1e999",
    "NaN",
    "null",
    "..",
    "../../etc/passwd",
    "%00",
    "'; DROP TABLE memories; --",
    PHONE,
    f"{PHONE}\x00",
    "+1",
    "+" + "1" * 300,
    "food",
]
nasty_text = st.sampled_from(NASTY_TEXT) | st.text(max_size=40)
anything = nasty_text | json_values


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def query_key(db: Any) -> str:
    """An admin key of the corpus's tenant."""
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    return (await tenants.issue_api_key(db, TENANT)).token


@pytest.fixture
async def ingest_key(db: Any, tenant: str) -> str:
    """An admin key of the webhook tests' tenant (``/v1/events``)."""
    return (await tenants.issue_api_key(db, tenant)).token


@pytest.fixture
async def query(topics: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(topics, embedder=EMBEDDER)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
            yield client


def assert_answered(response: httpx.Response) -> None:
    """Below 500; a 2xx, a redirect, or a 4xx in the error shape.

    The one redirect: a path with a trailing slash (``/v1/users/.`` is ``/v1/users/``)
    to the route without it (Starlette's ``redirect_slashes``).
    """
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code in (307, 308):
        assert not response.headers["location"].endswith("/"), response.headers
    elif not 200 <= response.status_code < 300:
        assert_error_body(response)


def wrong_answers(
    answers: list[tuple[str, httpx.Response]], check: Callable[[httpx.Response], None]
) -> list[str]:
    """The answers ``check`` fails, one line each (a test sends many requests and reports
    every wrong answer, not only the first)."""
    wrong = []
    for request, response in answers:
        try:
            check(response)
        except (AssertionError, KeyError, ValueError) as exc:
            wrong.append(f"{request} -> {response.status_code} {response.text[:200]} ({exc!r})")
    return wrong


def send(
    loop: asyncio.AbstractEventLoop,
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    # Header values as bytes: a client can send any (httpx would encode str as ASCII).
    raw = {name: value.encode() for name, value in (headers or {}).items()}
    return loop.run_until_complete(
        client.request(method, url, headers=raw, params=params, content=body)
    )


# --- schemathesis over the OpenAPI documents -------------------------------------


def cases(document: dict[str, Any], fixed: dict[str, str]) -> st.SearchStrategy[Case]:
    """Requests to every operation of ``document``, valid by it and violating it.

    Half the operations with a path parameter named in ``fixed`` get that value (a
    tenant or user that exists): otherwise nearly every request would stop at 404.
    """
    schema = schemathesis.openapi.from_dict(document)
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        known = {name: value for name, value in fixed.items() if f"{{{name}}}" in operation.path}
        for mode in GenerationMode:
            strategies.append(operation.as_strategy(generation_mode=mode))
            if known:
                strategies.append(
                    operation.as_strategy(generation_mode=mode, path_parameters=known)
                )
    return st.one_of(strategies)


def request_of(case: Case) -> tuple[str, str, dict[str, str], dict[str, Any], bytes | None]:
    """(method, url, headers without credentials, query, body) of a generated case."""
    prepared = case.as_transport_kwargs(base_url="http://generated")
    body = prepared.get("data")
    if "json" in prepared:
        body = json.dumps(prepared["json"]).encode()
    elif isinstance(body, str):
        body = body.encode()
    headers = {
        name: value
        for name, value in prepared["headers"].items()
        if name.lower() not in CREDENTIAL_HEADERS
    }
    # Control characters in a header value never reach an app: servers refuse them.
    assume(all(isinstance(v, str) and v.isprintable() for v in headers.values()))
    return prepared["method"], prepared["url"], headers, prepared["params"], body


#: Query parameters and headers the query routes read raw (so not in the document).
RAW_PARAMS = ["limit", "cursor", "state", "sector", "after", "reason", "conversation_id"]
header_text = st.sampled_from([v for v in NASTY_TEXT if v.isprintable() and len(v) < 8000]) | (
    st.text(st.characters(min_codepoint=32, exclude_categories=["Cc", "Cs"]), max_size=40)
)


@st.composite
def raw_inputs(draw: st.DrawFn, topic_prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """(query parameters, headers) that the query routes read without the document.

    A well-formed read-your-writes position of this deployment comes with a wait of 0 or
    1 ms (the default, 2 s, would make the run slow, not more thorough).
    """
    params = draw(st.dictionaries(st.sampled_from(RAW_PARAMS), nasty_text, max_size=3))
    headers: dict[str, str] = {}
    kind = draw(st.sampled_from(["none", "hostile", "position"]))
    if kind == "hostile":
        headers = draw(
            st.dictionaries(
                st.sampled_from(["X-Memstream-After", "X-Memstream-Wait-Ms", "Idempotency-Key"]),
                header_text,
                max_size=3,
            )
        )
    elif kind == "position":
        offset = draw(st.sampled_from(["0", "999999999", "9999999999999999999"]))
        headers = {
            "X-Memstream-After": f"{topic_prefix}.conversations:0:{offset}",
            "X-Memstream-Wait-Ms": draw(
                st.sampled_from(["0", "1", "²", "٣", "9" * 5000, "-1", "", " 1", "10001"])
            ),
        }
    if "after" in params and kind != "position" and "X-Memstream-Wait-Ms" not in headers:
        headers["X-Memstream-Wait-Ms"] = "0"  # a valid ?after= would wait 2 s
    return params, headers


def query_document(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> dict[str, Any]:
    response = send(loop, client, "GET", "/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize("credentials", ["valid", "bad"])
def test_the_query_api_answers_every_generated_request_below_500(
    topics: Settings,
    query: httpx.AsyncClient,
    query_key: str,
    fixture_loop: asyncio.AbstractEventLoop,
    credentials: str,
) -> None:
    """Every operation of the query document, with a valid API key or a bad or missing one.

    Without a valid key, no /v1 route answers a 2xx.
    """
    document = query_document(fixture_loop, query)
    bad_keys = st.sampled_from([{}, auth(WRONG_KEY), {"Authorization": "Basic eDp5"}]) | (
        header_text.map(lambda v: {"Authorization": v})
    )

    def example(case: Case, raw: tuple[dict[str, str], dict[str, str]], bad: Any) -> None:
        method, url, headers, params, body = request_of(case)
        extra_params, extra_headers = raw
        keys = auth(query_key) if credentials == "valid" else bad
        response = send(
            fixture_loop,
            query,
            method,
            url,
            headers={**headers, **extra_headers, **keys},
            params={**params, **extra_params},
            body=body,
        )
        assert_answered(response)
        if credentials == "bad" and case.path.startswith("/v1/"):
            assert response.status_code >= 400, response.text

    run_property(
        example,
        f"query-{credentials}",
        SETTINGS,
        case=cases(document, {"user": USER}),
        raw=raw_inputs(topics.topic_prefix),
        bad=bad_keys,
    )


@pytest.mark.parametrize("credentials", ["valid", "bad"])
def test_the_ingest_api_answers_every_generated_request_below_500_and_appends_only_what_it_says(
    topics: Settings,
    ingest: httpx.AsyncClient,
    ingest_key: str,
    tenant: str,
    fixture_loop: asyncio.AbstractEventLoop,
    credentials: str,
) -> None:
    """Every operation of the ingest document: signed as the platform would sign the
    generated body (or with the tenant's API key), or with bad or missing credentials.

    The log then holds exactly what the 200s reported; without valid credentials nothing
    is accepted and nothing appended.
    """
    document = ingest_openapi.document()
    ledger = Ledger("any")
    bad_credentials = st.sampled_from(
        [
            {},
            auth(WRONG_KEY),
            {"X-Vapi-Secret": SECRETS["retell"]},
            {"ElevenLabs-Signature": "t=1,v0=" + "ab" * 32},
            {"x-retell-signature": "v=1,d=" + "ab" * 32},
            {"x-signature": "ab" * 32, "x-timestamp": "1"},
        ]
    ) | st.dictionaries(st.sampled_from(sorted(CREDENTIAL_HEADERS)), header_text, max_size=3)

    def example(case: Case, bad: dict[str, str]) -> None:
        method, url, headers, params, body = request_of(case)
        if credentials == "bad":
            keys = bad
        elif case.path in PLATFORM_OF:
            keys = signed(PLATFORM_OF[case.path], body or b"")
        else:
            keys = auth(ingest_key)
        response = send(
            fixture_loop, ingest, method, url, headers={**headers, **keys}, params=params, body=body
        )
        if case.path.startswith("/v1/"):
            ledger.record(body or b"", response)
            if credentials == "bad":
                assert response.status_code >= 400, response.text
        else:
            assert_answered(response)

    run_property(
        example,
        f"ingest-{credentials}",
        SETTINGS,
        case=cases(document, {"tenant": tenant}),
        bad=bad_credentials,
    )

    if credentials == "bad":
        assert fixture_loop.run_until_complete(appended(topics)) == []
    else:
        fixture_loop.run_until_complete(ledger.check_log(topics))


# --- the agent tools ---------------------------------------------------------------

#: Tool bodies as the platforms send them, every way they may: the strategies below
#: send these with a value or two deleted or made wrong, as well as arbitrary JSON.
VAPI_MESSAGES: list[dict[str, Any]] = [
    {
        "message": {
            "type": "tool-calls",
            "call": {"id": "call-1", "customer": {"number": PHONE}},
            "toolCallList": [
                {"id": "tc-1", "name": "memory_search", "arguments": {"query": "food"}},
                {"id": "tc-2", "name": "memory_search", "arguments": '{"query": "knee surgery"}'},
            ],
        }
    },
    {
        "message": {
            "type": "tool-calls",
            "customer": {"number": "4155550123"},
            "toolWithToolCallList": [
                {
                    "toolCall": {
                        "id": "tc-3",
                        "function": {"name": "memory_search", "arguments": {"query": "allergies"}},
                    }
                },
                {
                    "toolCall": {
                        "id": "tc-4",
                        "function": {"name": "memory_search", "parameters": {"query": "food"}},
                    }
                },
            ],
        }
    },
]
ELEVENLABS_BODIES: list[dict[str, Any]] = [
    {"query": "food", "caller_id": PHONE},
    {"query": "knee surgery", "caller_id": "+1 (415) 555-0123", "conversation_id": "conv-1"},
    {"query": "allergies", "user": USER},
]
#: Past the number of calls a message may hold (each is a search).
HUGE_CALL_LIST = [{"id": f"call-{i}", "arguments": {"query": "food"}} for i in range(1000)]
vapi_bodies = st.one_of(
    json_values,
    st.sampled_from(VAPI_MESSAGES).flatmap(lambda body: mutations_of(body, anything)),
    st.sampled_from(VAPI_MESSAGES).flatmap(lambda body: mutations_of(body, anything)),
    st.sampled_from(
        [
            {"message": {"type": "tool-calls", "toolCallList": HUGE_CALL_LIST}},
            {"message": {"type": "tool-calls", "toolCallList": [None] * 5000}},
            {"message": {"type": "tool-calls", "toolWithToolCallList": [{}] * 1000}},
        ]
    ),
)
elevenlabs_bodies = st.one_of(
    json_values,
    st.sampled_from(ELEVENLABS_BODIES).flatmap(lambda body: mutations_of(body, anything)),
    st.sampled_from(ELEVENLABS_BODIES).flatmap(lambda body: mutations_of(body, anything)),
)


@pytest.mark.parametrize(
    ("route", "bodies"),
    [("/v1/tools/vapi", vapi_bodies), ("/v1/tools/elevenlabs/memory-search", elevenlabs_bodies)],
    ids=["vapi", "elevenlabs"],
)
def test_an_agent_tool_answers_every_body_below_500(
    topics: Settings,
    query: httpx.AsyncClient,
    query_key: str,
    fixture_loop: asyncio.AbstractEventLoop,
    route: str,
    bodies: st.SearchStrategy[Any],
) -> None:
    """Arbitrary JSON, and bodies of the tool's outline with wrong or hostile values.

    A Vapi message always answers its calls one by one: a 200 lists a result or an
    error for each call.
    """

    def example(document: Any) -> None:
        response = send(
            fixture_loop,
            query,
            "POST",
            route,
            headers={**auth(query_key), "Content-Type": "application/json"},
            body=orjson.dumps(document),
        )
        assert_answered(response)
        if route == "/v1/tools/vapi" and response.status_code == 200:
            for result in response.json()["results"]:
                assert set(result) in ({"toolCallId", "result"}, {"toolCallId", "error"}), result

    run_property(example, route, SETTINGS, document=bodies)


# --- hostile path parameters -----------------------------------------------------

#: Path segments as a client writes them in the URL (percent-encoded or not).
HOSTILE_SEGMENTS = [
    "%00",
    "a%00b",
    "x" * 5000,
    "é",
    "%C3%A9",
    "%FF",
    "%C3",
    "🙂",
    "%E2%80%AE",
    "%0A",
    "%7F",
    "..",
    "%2E%2E",
    ".",
    "%2F",
    "a%2Fb",
    "%20",
    "%25",
    "null",
    "-1",
    "9" * 400,
    str(uuid.UUID(int=0)),
]
REST_ROUTES = [
    ("GET", "/v1/users/{user}"),
    ("GET", "/v1/users/{user}/briefing"),
    ("GET", "/v1/users/{user}/memories"),
    ("GET", "/v1/users/{user}/conversations"),
    ("POST", "/v1/users/{user}/memories"),
    ("DELETE", "/v1/users/{user}/memories/{memory_id}"),
    ("DELETE", "/v1/users/" + USER + "/memories/{memory_id}"),
    ("GET", "/v1/conversations/{conversation_id}"),
]


async def test_a_hostile_path_parameter_is_refused_or_not_found(
    topics: Settings,
    query: httpx.AsyncClient,
    ingest: httpx.AsyncClient,
    query_key: str,
    tenant: str,
) -> None:
    """Every REST route of the query API and every webhook, with each hostile segment as
    each path parameter: below 500, and an error body unless the route found something;
    a webhook never accepts one."""
    answers: list[tuple[str, httpx.Response]] = []
    refused: list[tuple[str, httpx.Response]] = []
    for segment in HOSTILE_SEGMENTS:
        for method, template in REST_ROUTES:
            path = template.format(user=segment, memory_id=segment, conversation_id=segment)
            body = orjson.dumps({"content": "Prefers aisle seats"}) if method == "POST" else None
            response = await query.request(method, path, headers=auth(query_key), content=body)
            answers.append((f"{method} {path[:80]}", response))
        for platform, template in ROUTES.items():
            path, body = template.format(tenant=segment), b"{}"
            response = await ingest.post(path, content=body, headers=signed(platform, body))
            refused.append((f"POST {path[:80]}", response))
    assert wrong_answers([*answers, *refused], assert_answered) == []
    assert wrong_answers(refused, assert_error_body) == []


# --- an event too large for the log ----------------------------------------------

#: Where each webhook carries the text of a turn (its conversation.ended carries it too).
TURN_TEXT = {
    "elevenlabs": ("elevenlabs_post_call_transcription", ("data", "transcript", 1, "message")),
    "vapi": ("vapi_end_of_call_report", ("message", "artifact", "messages", 1, "message")),
    "retell": ("retell_call_analyzed", ("call", "transcript_object", 0, "content")),
}


def over_a_record(platform: str, tenant: str) -> bytes:
    """A body within the service's limit whose conversation.ended is over a record's."""
    if platform == "api":
        [event] = call_events(tenant, 1)[1:]
        # As a client sends it: personal data plain (memstream seals it on append).
        document = event.model_dump(mode="json")
        path: tuple[str | int, ...] = ("data", "turns", 0, "text")
    else:
        name, path = TURN_TEXT[platform]
        document = payload(name)
    value_at(document, path[:-1])[path[-1]] = "x" * (MAX_RECORD_BYTES + 1024)
    body = orjson.dumps(document)
    assert MAX_RECORD_BYTES < len(body) < Settings().max_body_bytes
    return body


async def test_an_event_too_large_for_the_log_is_413_not_a_retryable_503(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, ingest_key: str
) -> None:
    """The body is under MEMSTREAM_MAX_BODY_BYTES, but the event it makes is over the
    topics' max.message.bytes: no retry can append it, so not a 503 (which platforms
    retry), and nothing is appended."""
    answers: list[tuple[str, httpx.Response]] = []
    for platform in [*TURN_TEXT, "api"]:
        body = over_a_record(platform, tenant)
        if platform == "api":
            response = await ingest.post("/v1/events", content=body, headers=auth(ingest_key))
        else:
            url = ROUTES[platform].format(tenant=tenant)
            response = await ingest.post(url, content=body, headers=signed(platform, body))
        answers.append((platform, response))
    assert wrong_answers(answers, lambda r: assert_refused(r, 413, "event_too_large")) == []
    assert await appended(topics) == []


# --- forged cursors ----------------------------------------------------------------


def cursor(values: Any) -> str:
    """A cursor as the API encodes one (services/query/resources.py), of any values."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


PAGED = {
    "/v1/users": [["+14155550123"]],
    f"/v1/users/{USER}/memories": [["2026-03-01T00:00:00+00:00", str(uuid.UUID(int=1))]],
    f"/v1/users/{USER}/conversations": [["2026-03-01T00:00:00+00:00", "conv-1"]],
}
FORGED = [
    None,
    1,
    "\x00",
    "yesterday",
    "-infinity",
    "2026-13-45T99:99:99",
    "0001-01-01T00:00:00+00:00",
    str(uuid.UUID(int=0)),
    [],
    {"a": 1},
    2**63,
    1e308,
    True,
]


async def test_a_cursor_of_values_of_any_type_is_refused_or_answered(
    topics: Settings, query: httpx.AsyncClient, query_key: str
) -> None:
    """A cursor is client input: one that was not issued by the API, with values of any
    type in each place, is a 422 (or, when it could be one, a page), never a database
    error."""
    answers: list[tuple[str, httpx.Response]] = []
    for route, [issued] in PAGED.items():
        for place in range(len(issued)):
            for value in FORGED:
                values = [*issued[:place], value, *issued[place + 1 :]]
                response = await query.get(
                    route, params={"cursor": cursor(values)}, headers=auth(query_key)
                )
                answers.append((f"{route} {values}", response))
    assert wrong_answers(answers, assert_answered) == []


# --- deep nesting ------------------------------------------------------------------

DEEP = "__deep__"
#: Where each ingest body keeps a free-form value verbatim in its event.
KEPT = {
    "elevenlabs": ("elevenlabs_post_call_transcription", ("data", "metadata", "extra")),
    "vapi": ("vapi_end_of_call_report", ("message", "analysis", "structuredData")),
    "retell": ("retell_call_analyzed", ("call", "metadata")),
}


def nested(document: Any, depth: int) -> bytes:
    """``document`` with its ``DEEP`` value replaced by lists nested ``depth`` deep (written
    by hand: a JSON writer refuses to go as deep as a JSON reader will read)."""
    return orjson.dumps(document).replace(orjson.dumps(DEEP), b"[" * depth + b'"x"' + b"]" * depth)


async def test_a_value_nested_too_deep_to_keep_is_422(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, ingest_key: str
) -> None:
    """JSON as deep as the parser reads (1,024 levels) in a value the event keeps: the
    event could not be written (encoders stop at ~255 levels, Python's recursion before
    1,000), so the body is refused with the field's path, and nothing is appended."""
    answers: list[tuple[str, httpx.Response]] = []
    for depth in (300, 1000):
        for platform, (name, path) in KEPT.items():
            document = payload(name)
            value_at(document, path[:-1])[path[-1]] = DEEP
            body = nested(document, depth)
            url = ROUTES[platform].format(tenant=tenant)
            response = await ingest.post(url, content=body, headers=signed(platform, body))
            answers.append((f"{platform} {depth}", response))
        [event] = call_events(tenant, 1)[1:]
        document = orjson.loads(encode_event(event))
        document["data"]["metadata"] = {"extra": DEEP}
        body = nested(document, depth)
        response = await ingest.post("/v1/events", content=body, headers=auth(ingest_key))
        answers.append((f"api {depth}", response))

    def refused(response: httpx.Response) -> None:
        assert response.status_code == 422
        assert_error_body(response)

    assert wrong_answers(answers, refused) == []
    assert await appended(topics) == []
