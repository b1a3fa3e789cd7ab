"""The `memstream` command as a user runs it: a real process, real infrastructure."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import orjson

from projections.conversations import get_conversation
from services import tenants
from services.settings import Settings
from streams import EventLog
from streams.offsets import partitions_of
from streams.topics import Topics
from tests.helpers import call_events, eventually, free_port
from tests.integration.ingest_fixtures import SECRETS, TENANT, deliver, payload


async def test_memstream_run_ingests_projects_serves_metrics_and_stops_cleanly(
    settings: Settings, db: Any
) -> None:
    metrics_port = free_port(3)  # three distinct ports for the process's servers
    ingest_port, query_port = metrics_port + 1, metrics_port + 2
    await tenants.create_tenant(db, TENANT, "Bayview Dental", default_region="US")
    await tenants.add_webhook_secret(db, TENANT, "vapi", SECRETS["vapi"])
    key = await tenants.issue_api_key(db, TENANT)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run"],
        env={
            **os.environ,
            **settings.to_env(),
            "MEMSTREAM_METRICS_PORT": str(metrics_port),
            "MEMSTREAM_INGEST_PORT": str(ingest_port),
            "MEMSTREAM_QUERY_PORT": str(query_port),
            "MEMSTREAM_LOG_FORMAT": "json",
            "MEMSTREAM_LOG_HASH_KEY": "run-test-key",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with EventLog(settings) as log:
            conversations = Topics(settings.topic_prefix).conversations
            await eventually(
                lambda: partitions_of(settings.require_kafka(), [conversations]), bool, timeout=60
            )
            await log.append_many(call_events("acme", 3))

        async def projected() -> Any:
            try:
                return await get_conversation(db, "acme", "conv-2")
            except Exception:  # the views appear when the runner registers
                return None

        conversation = await eventually(
            projected, lambda c: c is not None and c["status"] == "ended"
        )
        assert conversation["turn_count"] == 4

        # A platform webhook, over the network, into the same read model.
        webhook = payload("vapi_end_of_call_report")
        call_id = webhook["message"]["call"]["id"]
        base = f"http://127.0.0.1:{ingest_port}"
        async with httpx.AsyncClient(base_url=base) as client:
            await eventually(lambda: _ready(client), bool, timeout=30)
            response = await deliver(client, "vapi", webhook)
        assert response.status_code == 200, response.text
        ended = await eventually(
            lambda: get_conversation(db, TENANT, call_id, with_turns=False),
            lambda c: c is not None and c["status"] == "ended",
        )

        # The query service of the same process answers with that caller's briefing.
        user = ended["subject"].partition("/")[2]
        headers = {"Authorization": f"Bearer {key.token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{query_port}") as client:
            await eventually(lambda: _ready(client), bool, timeout=30)
            response = await client.get(f"/v1/users/{user}/briefing", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["last_interaction"], response.json()

        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
        assert (
            'memstream_projection_events_total{outcome="applied",projection="conversations"'
            in metrics
        )
        # Unauthenticated: bound to MEMSTREAM_METRICS_HOST (loopback), not every interface.
        assert _listening_on(metrics_port) == ["127.0.0.1"]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
        print(stderr.decode()[-5000:])  # shown by pytest when the test fails
    assert process.returncode == 0, stderr.decode()[-3000:]
    # Logs are JSON lines; the webhook's carries its conversation id as a field.
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.startswith(b"{")]
    accepted = [entry for entry in lines if entry["message"] == "webhook accepted"]
    assert [entry["conversation_id"] for entry in accepted] == [call_id]
    assert accepted[0]["kind"] == "vapi.end-of-call-report"
    # The caller as a hash keyed with MEMSTREAM_LOG_HASH_KEY, never their number.
    keyed = hmac.new(b"run-test-key", ended["subject"].encode(), hashlib.sha256)
    assert accepted[0]["subject_hash"] == keyed.hexdigest()[:16]
    assert ended["subject"].partition("/")[2].lstrip("+") not in stderr.decode()


async def _ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health/ready")).status_code == 200
    except httpx.TransportError:
        return False


def _listening_on(port: int) -> list[str]:
    """The IPv4 addresses a socket listens on at ``port`` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
