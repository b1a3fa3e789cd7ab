"""The query service's tenant lookup (services/service_base.py, shared with ingest): a
string no tenant can have is refused like a tenant that does not exist, without asking the
database, as the ingest service refuses one in a webhook URL."""

from __future__ import annotations

from typing import Any

import pytest

from services import tenants
from services.errors import ApiError
from services.query.service import QueryService
from services.settings import Settings
from tests.integration.query.corpus import EMBEDDER, TENANT

#: Not tenant ids (services/tenants.py, TENANT_PATTERN): upper case, a space, a NUL byte
#: (which PostgreSQL would refuse as text: a 500 if it reached the query), too long.
MALFORMED = ["Acme", "acme clinics", "acme\x00", "-acme", "a" * 64, ""]


@pytest.mark.parametrize("tenant", MALFORMED)
async def test_a_malformed_tenant_is_refused_like_an_unknown_one_without_a_query(
    settings: Settings, tenant: str
) -> None:
    service = QueryService(settings, EMBEDDER)
    # The pool is not opened: a lookup that reached the database would fail with
    # PoolClosed, not with the refusal.
    with pytest.raises(ApiError) as refused:
        await service.tenant(tenant)
    assert (refused.value.status, refused.value.code) == (401, "bad_credentials")


async def test_an_unknown_tenant_is_refused_and_a_known_one_found(
    settings: Settings, db: Any
) -> None:
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    service = QueryService(settings, EMBEDDER)
    await service.pool.open(wait=True, timeout=10)
    try:
        found = await service.tenant(TENANT)
        assert (found.tenant, found.default_region) == (TENANT, "US")
        with pytest.raises(ApiError) as refused:
            await service.tenant("no-such-tenant")
        assert (refused.value.status, refused.value.code) == (401, "bad_credentials")
    finally:
        await service.pool.close()
