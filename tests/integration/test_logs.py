"""The services' log lines about a call carry tenant, subject_hash, conversation_id and
event_id as JSON fields of their own (services/logs.py), through the real apps — and
never a caller's number, in a log line or in /metrics."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from schemas import encode_event
from services import tenants
from services.logs import JsonFormatter, subject_hash
from services.query.app import create_app as create_query_app
from services.settings import Settings
from tests.helpers import call_events
from tests.integration.ingest_fixtures import TENANT, api_key, deliver, ingest, payload, tenant
from tests.integration.query.corpus import EMBEDDER

__all__ = ["api_key", "ingest", "tenant"]  # fixtures used by name below

FIELDS = ("tenant", "subject_hash", "conversation_id", "event_id")
#: The caller of the Vapi payloads, and the digits no log line may hold.
CALLER = "+14155550123"
DIGITS = "4155550123"


class JsonLines(logging.Handler):
    """Every record, formatted as the services format it (MEMSTREAM_LOG_FORMAT=json)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self, message_prefix: str) -> list[dict[str, Any]]:
        """The decoded lines whose message starts with ``message_prefix``."""
        decoded = [orjson.loads(line) for line in self.lines]
        return [entry for entry in decoded if entry["message"].startswith(message_prefix)]


@pytest.fixture
def logs() -> Iterator[JsonLines]:
    handler = JsonLines()
    loggers = [logging.getLogger(name) for name in ("services.ingest.app", "services.query.app")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


async def test_an_accepted_webhook_logs_its_tenant_subject_hash_conversation_and_event(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, logs: JsonLines
) -> None:
    body = payload("vapi_end_of_call_report")
    response = await deliver(ingest, "vapi", body)
    assert response.status_code == 200, response.text
    [event] = response.json()["events"]

    [entry] = logs.entries("webhook accepted")
    assert entry["tenant"] == TENANT
    assert entry["subject_hash"] == subject_hash(f"{TENANT}/{CALLER}")
    assert "subject" not in entry
    assert logs.lines and not [line for line in logs.lines if DIGITS in line]
    assert entry["conversation_id"] == body["message"]["call"]["id"]
    assert entry["event_id"] == event["id"]
    assert entry["kind"] == "vapi.end-of-call-report" and entry["level"] == "INFO"


async def test_a_refused_webhook_logs_its_tenant_and_why(
    ingest: httpx.AsyncClient, tenant: str, logs: JsonLines
) -> None:
    body = orjson.dumps(payload("vapi_end_of_call_report"))
    response = await ingest.post(
        f"/v1/webhooks/{TENANT}/vapi",
        content=body,
        headers={"Content-Type": "application/json", "X-Vapi-Secret": "not-the-secret"},
    )
    assert response.status_code == 401

    [entry] = logs.entries("request refused")
    # Every field is there; what a refused request cannot know yet is null.
    assert {key: entry[key] for key in FIELDS} == {
        "tenant": TENANT,
        "subject_hash": None,
        "conversation_id": None,
        "event_id": None,
    }
    assert entry["status"] == 401 and entry["code"] == response.json()["error"]["code"]
    assert entry["route"] == "/v1/webhooks/{tenant}/vapi"


async def test_events_posted_to_the_api_log_their_ids(
    topics: Settings, ingest: httpx.AsyncClient, api_key: str, logs: JsonLines
) -> None:
    events = call_events("acme", 1)  # started + ended of one call
    response = await ingest.post(
        "/v1/events",
        json=[orjson.loads(encode_event(e)) for e in events],
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 200, response.text

    [entry] = logs.entries("events accepted")
    assert entry["tenant"] == "acme"
    assert entry["subject_hash"] == subject_hash(events[0].subject)
    # These events have no correlation id: the conversation named in their payload.
    assert events[0].correlation_id is None
    assert entry["conversation_id"] == events[0].data.conversation_id  # type: ignore[attr-defined]
    assert entry["event_id"] == str(events[0].id)
    assert entry["event_ids"] == [str(e.id) for e in events]


@pytest.fixture
async def query(topics: Settings, db: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The query app, in process, with an API key of tenant `acme`."""
    await tenants.create_tenant(db, "acme", "Acme Clinics", default_region="US")
    token = (await tenants.issue_api_key(db, "acme")).token
    app = create_query_app(topics, embedder=EMBEDDER)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://query",
            headers={"Authorization": f"Bearer {token}"},
        ) as client,
    ):
        yield client


async def test_a_memory_asserted_through_the_query_api_logs_its_event(
    query: httpx.AsyncClient, logs: JsonLines
) -> None:
    response = await query.post(
        "/v1/users/+14155550123/memories",
        json={"content": "Prefers morning appointments", "sector": "semantic"},
    )
    assert response.status_code == 201, response.text

    [entry] = logs.entries("memory.asserted appended")
    assert {key: entry[key] for key in FIELDS} == {
        "tenant": "acme",
        "subject_hash": subject_hash(f"acme/{CALLER}"),
        "conversation_id": None,  # asserted by hand, outside any call
        "event_id": response.json()["event_id"],
    }
    assert entry["position"] == response.json()["position"]


async def test_a_refused_vapi_tool_call_logs_the_call_it_belongs_to(
    query: httpx.AsyncClient, logs: JsonLines
) -> None:
    message = {
        "message": {
            "type": "tool-calls",
            "call": {"id": "call-7f3a"},  # no customer number: the caller cannot be placed
            "toolCallList": [
                {"id": "tc-1", "name": "memory_search", "arguments": {"query": "allergies"}}
            ],
        }
    }
    response = await query.post("/v1/tools/vapi", json=message)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["toolCallId"] == "tc-1"
    assert "error" in response.json()["results"][0]

    [entry] = logs.entries("tool call refused")
    assert entry["tenant"] == "acme" and entry["conversation_id"] == "call-7f3a"
    assert entry["subject_hash"] is None and entry["event_id"] is None
    assert entry["tool_call_id"] == "tc-1" and entry["code"] == "unknown_caller"


async def test_a_refused_vapi_tool_call_logs_the_callers_hash_not_their_number(
    query: httpx.AsyncClient, logs: JsonLines
) -> None:
    message = {
        "message": {
            "type": "tool-calls",
            "call": {"id": "call-9c2e", "customer": {"number": "(415) 555-0123"}},
            "toolCallList": [
                {"id": "tc-1", "name": "memory_search", "arguments": {"query": "allergies"}}
            ],
        }
    }
    # The caller is placed, but no projection has built the memories read model: refused.
    response = await query.post("/v1/tools/vapi", json=message)
    assert response.status_code == 200, response.text
    assert "error" in response.json()["results"][0], response.json()

    [entry] = logs.entries("tool call refused")
    assert entry["code"] == "read_model_unavailable" and entry["conversation_id"] == "call-9c2e"
    assert entry["subject_hash"] == subject_hash(f"acme/{CALLER}")
    assert not [line for line in logs.lines if DIGITS in line]


def test_log_hash_prints_the_hash_the_services_log_with_the_configured_key() -> None:
    subject = f"acme/{CALLER}"
    printed = subprocess.run(
        [sys.executable, "-m", "services.cli", "log-hash", subject],
        env={**os.environ, "MEMSTREAM_LOG_HASH_KEY": "operators-key"},
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    keyed = hmac.new(b"operators-key", subject.encode(), hashlib.sha256).hexdigest()
    assert printed == keyed[:16]
    # A different key, a different pseudonym: the built-in one is not the configured one.
    assert printed != subject_hash(subject)


async def test_metrics_name_no_tenant_and_no_caller(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    response = await deliver(ingest, "vapi", payload("vapi_end_of_call_report"))
    assert response.status_code == 200, response.text
    await tenants.create_tenant(db, "acme", "Acme Clinics", default_region="US")
    token = (await tenants.issue_api_key(db, "acme")).token
    # One request a key at most, so the second is refused with 429 (counted).
    app = create_query_app(
        topics.replace(query_rate_limit=0.001, query_rate_burst=1), embedder=EMBEDDER
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://query",
            headers={"Authorization": f"Bearer {token}"},
        ) as query,
    ):
        search = {"user": CALLER, "query": "allergies"}
        await query.post("/v1/memories/search", json=search)
        assert (await query.post("/v1/memories/search", json=search)).status_code == 429
        served = [(await query.get("/metrics")).text, (await ingest.get("/metrics")).text]

    for metrics in served:
        # One series, unlabelled (other tests of this process may have added to it).
        assert re.search(r"^memstream_query_rate_limited_total [1-9]", metrics, re.M)
        assert "memstream_query_rate_limited_total{" not in metrics
        for name in ("acme", TENANT, DIGITS):
            assert name not in metrics.lower()
