"""The ingest service's limits through the real app and the real log: each tenant's rate,
and clients that keep failing to authenticate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from services import tenants
from services.ingest.app import create_app
from services.settings import Settings
from tests.integration.ingest_fixtures import ROUTES, SECRETS, TENANT, deliver, payload, signed

OTHER_TENANT = "harbor"


@pytest.fixture
async def two_tenants(db: Any) -> None:
    for tenant in (TENANT, OTHER_TENANT):
        await tenants.create_tenant(db, tenant, tenant.title(), default_region="US")
        for platform, secret in SECRETS.items():
            await tenants.add_webhook_secret(db, tenant, platform, secret)


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


def vapi_report(call_id: str) -> dict[str, Any]:
    body = payload("vapi_end_of_call_report")
    body["message"]["call"]["id"] = call_id
    return body


def rate_limited() -> float:
    return REGISTRY.get_sample_value("memstream_ingest_rate_limited_total") or 0.0


async def test_a_tenant_over_its_rate_gets_429_with_retry_after(
    topics: Settings, two_tenants: None
) -> None:
    async for client in _client(topics.replace(ingest_rate_limit=0.5, ingest_rate_burst=2)):
        before = rate_limited()
        statuses = [
            (await deliver(client, "vapi", vapi_report(f"call-{i}"))).status_code for i in range(3)
        ]
        assert statuses == [200, 200, 429]
        refused = await deliver(client, "vapi", vapi_report("call-3"))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["retry-after"] == "2"
        assert rate_limited() == before + 2
        # Another tenant has its own bucket.
        other = await deliver(client, "vapi", vapi_report("call-4"), tenant=OTHER_TENANT)
        assert other.status_code == 200


async def test_a_client_failing_to_authenticate_is_refused_for_a_while(
    topics: Settings, two_tenants: None
) -> None:
    async for client in _client(topics.replace(auth_failure_limit=3)):
        body = orjson.dumps(vapi_report("call-1"))
        url = ROUTES["vapi"].format(tenant=TENANT)
        wrong = signed("vapi", body, secret="not-the-secret")
        for _ in range(3):
            response = await client.post(url, content=body, headers=wrong)
            assert response.status_code == 401
        # Locked out: even the right secret is refused now, before it is checked.
        refused = await client.post(url, content=body, headers=signed("vapi", body))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_auth_failures"
        assert int(refused.headers["retry-after"]) > 0
        # The lockout is per client address and tenant of the URL.
        other = await deliver(client, "vapi", vapi_report("call-2"), tenant=OTHER_TENANT)
        assert other.status_code == 200
