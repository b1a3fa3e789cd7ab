"""Fixtures for the ingest service tests: the real app, in process, on real infrastructure."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services import tenants
from services.ingest.app import create_app
from services.ingest.signatures import sign_elevenlabs, sign_retell
from services.settings import Settings


@pytest.fixture
async def ingest(topics: Settings, db: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the ingest app (lifespan run: pool and producer started)."""
    app = create_app(topics)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


@pytest.fixture
async def api_key(db: Any) -> str:
    """A token for tenant `acme` (created here)."""
    await tenants.create_tenant(db, "acme", "Acme Dental")
    return (await tenants.issue_api_key(db, "acme", "tests")).token


PAYLOADS = Path(__file__).resolve().parents[1] / "unit" / "ingest_payloads"

#: The tenant the webhook tests use, and the secret of each of its platforms.
TENANT = "bayview"
SECRETS = {
    "elevenlabs": "wsec_elevenlabs_0123456789",
    "elevenlabs-init": "init_token_0123456789abcdef",
    "vapi": "vapi_secret_0123456789",
    "retell": "key_retell_0123456789abcd",
}


def payload(name: str) -> dict[str, Any]:
    """A realistic platform body from tests/unit/ingest_payloads (a fresh copy)."""
    loaded: dict[str, Any] = orjson.loads((PAYLOADS / f"{name}.json").read_bytes())
    return loaded


@pytest.fixture
async def tenant(db: Any) -> str:
    """Tenant `bayview` (region US) with one active secret per platform (see SECRETS)."""
    await tenants.create_tenant(db, TENANT, "Bayview Dental", default_region="US")
    for platform, secret in SECRETS.items():
        await tenants.add_webhook_secret(db, TENANT, platform, secret)
    return TENANT


def signed(platform: str, body: bytes, *, secret: str | None = None) -> dict[str, str]:
    """The headers the platform would send with ``body`` now, signed with its test secret."""
    key = secret if secret is not None else SECRETS[platform]
    now = int(time.time())
    headers = {"Content-Type": "application/json"}
    if platform == "elevenlabs":
        headers["ElevenLabs-Signature"] = sign_elevenlabs(key, body, now)
    elif platform == "elevenlabs-init":
        headers["Authorization"] = f"Bearer {key}"
    elif platform == "vapi":
        headers["X-Vapi-Secret"] = key
    elif platform == "retell":
        headers["x-retell-signature"] = sign_retell(key, body, now * 1000)
    else:
        raise ValueError(platform)
    return headers


ROUTES = {
    "elevenlabs": "/v1/webhooks/{tenant}/elevenlabs",
    "elevenlabs-init": "/v1/webhooks/{tenant}/elevenlabs/initiation",
    "vapi": "/v1/webhooks/{tenant}/vapi",
    "retell": "/v1/webhooks/{tenant}/retell",
}


async def deliver(
    client: httpx.AsyncClient,
    platform: str,
    document: Any,
    *,
    tenant: str = TENANT,
    query: str = "",
) -> httpx.Response:
    """POST ``document`` to the platform's webhook route, signed as the platform would."""
    body = orjson.dumps(document)
    url = ROUTES[platform].format(tenant=tenant) + query
    return await client.post(url, content=body, headers=signed(platform, body))
