"""The API key a request carries, shared by the ingest and query services.

``Authorization: Bearer msk_<key_id>_<secret>`` is checked against the stored hash
(services/tenants.py). Keys are cached by the token's hash: re-read at most every
``cache_ttl_s`` (a revoked key stops working within it) and kept through a database
outage for up to ``cache_stale_s`` (services/expiring.py). A client that keeps failing
is refused before any lookup (services/ratelimit.py, ``FailedAuthentications``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from services import tenants
from services.errors import ApiError
from services.expiring import Expiring
from services.ratelimit import FailedAuthentications
from services.settings import Settings

__all__ = ["ApiKeys"]


class ApiKeys:
    """Authenticates requests by their bearer API key."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        settings: Settings,
        failures: FailedAuthentications,
    ) -> None:
        self._pool = pool
        self._failures = failures
        self._keys: Expiring[bytes, tenants.ApiKey | None] = Expiring(
            settings.cache_ttl_s, stale_s=settings.cache_stale_s
        )

    async def of(self, request: Request) -> tenants.ApiKey:
        """The request's active key; 401 without one (429 for a client that keeps failing)."""
        self._failures.check(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing_credentials", "send Authorization: Bearer <api key>")

        async def load() -> tenants.ApiKey | None:
            async with self._pool.connection() as conn:
                return await tenants.authenticate_api_key(conn, token)

        key = await self._keys.get(hashlib.sha256(token.encode()).digest(), load)
        if key is None:
            raise ApiError(401, "bad_credentials", "the API key is unknown or revoked")
        return key
