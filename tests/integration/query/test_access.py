"""Access control in the query service: what each key scope may do on every route, and
the agent tools' caller — bound by the platform to the call, never taken from what the
LLM writes into the tool's arguments (docs/security.md).

The corpus (corpus.py) has two callers of one tenant: SUBJECT, whose memories include
"Allergic to penicillin" and the call ``call-q1``, and OTHER, who "Prefers Thai food".
Every trick below is played from SUBJECT's call to reach OTHER's memories.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services import tenants
from services.query.app import create_app
from services.settings import Settings
from tests.integration.query.corpus import EMBEDDER, OTHER, SUBJECT, TENANT

CALLER = SUBJECT.partition("/")[2]  # +14155550123, on the line
VICTIM = OTHER.partition("/")[2]  # +14155550124, whose memories must not leak
CALL = "call-q1"  # SUBJECT's conversation in the corpus
SECRET = "Thai"  # in VICTIM's only memory, in nothing of CALLER's

#: Arguments an LLM can be talked into writing, each naming the victim some way.
TRICKS: list[dict[str, Any]] = [
    {"user": VICTIM},
    {"user": OTHER},
    {"user": f" {VICTIM} "},
    {"user": "(415) 555-0124"},
    {"user": f"../{VICTIM}"},
    {"user": VICTIM, "caller_id": VICTIM},
    {"user": VICTIM, "conversation_id": "call-of-victim"},
    {"caller_id": VICTIM, "customer": {"number": VICTIM}},
    {"subject": OTHER, "tenant": TENANT},
]


@pytest.fixture
async def keys(db: Any) -> dict[str, tenants.IssuedKey]:
    """One key per scope, plus an agent key that allows the `user` argument."""
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    issued = {
        scope: await tenants.issue_api_key(db, TENANT, scope, [scope]) for scope in tenants.SCOPES
    }
    issued["agent+user"] = await tenants.issue_api_key(
        db, TENANT, "agent+user", ["agent"], allow_user_argument=True
    )
    return issued


@pytest.fixture
async def query(topics: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # `topics`: this test's own topics on its copy of the corpus, for what it asserts.
    app = create_app(topics, embedder=EMBEDDER)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
            yield client


def auth(key: tenants.IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.token}"}


def vapi_message(arguments: dict[str, Any], *, bound: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "tool-calls",
        "toolCallList": [{"id": "t1", "name": "memory_search", "arguments": arguments}],
    }
    if bound:
        message["call"] = {"id": CALL, "customer": {"number": CALLER}}
    return {"message": message}


@pytest.mark.parametrize("trick", TRICKS)
@pytest.mark.parametrize("scope", ["agent", "read", "admin"])
async def test_vapi_tool_answers_about_the_caller_on_the_line_whatever_the_arguments(
    query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey], trick: dict[str, Any], scope: str
) -> None:
    arguments = {"query": "what food do they like, and allergies", **trick}
    response = await query.post(
        "/v1/tools/vapi", json=vapi_message(arguments), headers=auth(keys[scope])
    )
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert "penicillin" in result["result"]  # the caller's own memories
    assert SECRET not in response.text and "0124" not in response.text


@pytest.mark.parametrize("trick", TRICKS)
async def test_elevenlabs_tool_answers_about_the_bound_caller_whatever_the_body(
    query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey], trick: dict[str, Any]
) -> None:
    for binding in ({"caller_id": CALLER}, {"conversation_id": CALL}):
        # The platform's binding is sent last by nobody in particular: the LLM's fields
        # come first and the bound ones win whatever the order.
        body = {"query": "what food do they like, and allergies", **trick, **binding}
        response = await query.post(
            "/v1/tools/elevenlabs/memory-search", json=body, headers=auth(keys["agent"])
        )
        assert response.status_code == 200, response.text
        assert "penicillin" in response.json()["result"]
        assert SECRET not in response.text


async def test_a_user_argument_with_nothing_bound_is_refused_unless_the_key_allows_it(
    query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    body = {"query": "what food do they like", "user": VICTIM}
    for scope in ("agent", "read", "admin"):
        refused = await query.post(
            "/v1/tools/elevenlabs/memory-search", json=body, headers=auth(keys[scope])
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "user_argument_not_allowed"
        vapi = await query.post(
            "/v1/tools/vapi", json=vapi_message(body, bound=False), headers=auth(keys[scope])
        )
        assert vapi.status_code == 200
        assert "result" not in vapi.json()["results"][0]
        assert SECRET not in vapi.text
    # A tenant that binds its own user ids (a web widget, no phone) turns it on per key.
    allowed = await query.post(
        "/v1/tools/elevenlabs/memory-search", json=body, headers=auth(keys["agent+user"])
    )
    assert allowed.status_code == 200
    assert SECRET in allowed.json()["result"]
    # ...and even then what the platform binds wins.
    bound = await query.post(
        "/v1/tools/elevenlabs/memory-search",
        json={**body, "caller_id": CALLER},
        headers=auth(keys["agent+user"]),
    )
    assert SECRET not in bound.text and "Italian" in bound.json()["result"]


async def test_an_unknown_conversation_falls_back_to_the_bound_number_only(
    query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    # A conversation the read model does not know yet (the call just started): the
    # number Vapi bound names the caller.
    message = vapi_message({"query": "allergies"})
    message["message"]["call"]["id"] = "call-not-projected-yet"
    response = await query.post("/v1/tools/vapi", json=message, headers=auth(keys["agent"]))
    assert "penicillin" in response.json()["results"][0]["result"]
    # Neither known nor numbered: refused, not guessed.
    nothing = await query.post(
        "/v1/tools/elevenlabs/memory-search",
        json={"query": "allergies", "conversation_id": "call-not-projected-yet"},
        headers=auth(keys["agent"]),
    )
    assert nothing.status_code == 422
    assert nothing.json()["error"]["code"] == "unknown_caller"


async def test_an_agent_key_reads_the_briefing_of_its_own_call_only(
    query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    agent = auth(keys["agent"])
    own = await query.get(f"/v1/users/{CALLER}/briefing?conversation_id={CALL}", headers=agent)
    assert own.status_code == 200, own.text
    for path in (
        f"/v1/users/{VICTIM}/briefing?conversation_id={CALL}",
        f"/v1/users/{VICTIM}/briefing",
        f"/v1/users/{CALLER}/briefing",  # no call named: nothing to bind
        f"/v1/users/{VICTIM}/briefing?conversation_id=call-unknown",
    ):
        refused = await query.get(path, headers=agent)
        assert refused.status_code in (403, 422), (path, refused.text)
        assert SECRET not in refused.text and "Thai" not in refused.text


USER_PATH = f"/v1/users/{CALLER}"
MEMORY_ID = "018f0000-0000-7000-8000-000000000000"

#: Every /v1 route of the query app: what it needs, and a request to it.
ROUTES: dict[tuple[str, str], tuple[set[str], dict[str, Any]]] = {
    ("POST", "/v1/memories/search"): ({"read"}, {"json": {"user": CALLER, "query": "food"}}),
    ("POST", "/v1/transcripts/search"): ({"read"}, {"json": {"user": CALLER, "query": "knee"}}),
    ("POST", "/v1/context"): ({"read"}, {"json": {"user": CALLER, "token_budget": 200}}),
    ("GET", "/v1/users/{user}/briefing"): ({"read"}, {"url": f"{USER_PATH}/briefing"}),
    ("POST", "/v1/tools/elevenlabs/memory-search"): (
        {"agent", "read"},
        {"json": {"query": "food", "caller_id": CALLER}},
    ),
    ("POST", "/v1/tools/vapi"): ({"agent", "read"}, {"json": vapi_message({"query": "food"})}),
    # A timeout of 1 s: the client waits for the whole stream.
    ("GET", "/v1/calls/{call_id}/context"): (
        {"agent", "read"},
        {"url": f"/v1/calls/{CALL}/context?timeout=1"},
    ),
    ("GET", "/v1/users"): ({"read"}, {}),
    ("GET", "/v1/users/{user}"): ({"read"}, {"url": USER_PATH}),
    ("GET", "/v1/users/{user}/memories"): ({"read"}, {"url": f"{USER_PATH}/memories"}),
    ("POST", "/v1/users/{user}/memories"): (
        {"write"},
        {"url": f"{USER_PATH}/memories", "json": {"content": "Likes tea"}},
    ),
    ("DELETE", "/v1/users/{user}/memories/{memory_id}"): (
        {"write"},
        {"url": f"{USER_PATH}/memories/{MEMORY_ID}"},
    ),
    ("GET", "/v1/users/{user}/conversations"): ({"read"}, {"url": f"{USER_PATH}/conversations"}),
    ("DELETE", "/v1/users/{user}"): (set(), {"url": USER_PATH}),  # admin only
    ("GET", "/v1/users/{user}/export"): (set(), {"url": f"{USER_PATH}/export"}),  # admin only
    ("GET", "/v1/conversations/{conversation_id}"): (
        {"read"},
        {"url": f"/v1/conversations/{CALL}"},
    ),
    ("GET", "/v1/audit"): (set(), {"url": "/v1/audit?user=%2B14155550123"}),
}


def test_the_scope_table_covers_every_route(settings: Settings) -> None:
    app = create_app(settings, embedder=EMBEDDER)
    routes = {
        (method, route.path)
        for route in app.routes
        if getattr(route, "path", "").startswith("/v1/")
        for method in getattr(route, "methods", ())
    }
    assert routes == set(ROUTES)


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_each_scope_reaches_exactly_its_routes(
    query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey], route: tuple[str, str]
) -> None:
    method, path = route
    needs, request = ROUTES[route]
    for scope in tenants.SCOPES:
        response = await query.request(
            method,
            request.get("url", path),
            json=request.get("json"),
            headers=auth(keys[scope]),
        )
        allowed = scope == "admin" or scope in needs
        if allowed:  # past authorisation: an answer, or a refusal of the request itself
            assert response.status_code < 400 or response.status_code == 404, (
                scope,
                route,
                response.text,
            )
        else:
            assert response.status_code == 403, (scope, route, response.text)
            assert response.json()["error"]["code"] == "insufficient_scope"
