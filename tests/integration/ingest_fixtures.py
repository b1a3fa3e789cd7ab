"""Fixtures for the ingest service tests: the real app, in process, on real infrastructure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services import tenants
from services.ingest.app import create_app
from streams import Settings


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
