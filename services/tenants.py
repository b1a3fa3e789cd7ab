"""Tenants, their settings and their credentials: API keys (stored hashed) and webhook
secrets.

An API key is the token ``msk_<key_id>_<secret>``: ``key_id`` finds the row, the secret
is checked against its SHA-256 in constant time. Webhook secrets are HMAC keys or bearer
tokens configured on the platforms' side; several can be active per tenant and platform
at once, which is how a secret is rotated: add the new one, switch the platform, revoke
the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, errors
from psycopg.rows import class_row

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PLATFORMS = ("elevenlabs", "elevenlabs-init", "vapi", "retell")
#: What a key may do (docs/security.md): ``agent`` the tools and the call's own briefing,
#: ``read`` searches and the resources, ``write`` assert and retract, ``ingest``
#: conversation events on ``/v1/events``, ``admin`` all of it and erasure.
SCOPES = ("agent", "read", "write", "ingest", "admin")
_TOKEN = re.compile(r"^msk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
#: A transcript or memory retention (migrations 0009, 0011): at least an hour (what the
#: columns' CHECK allows), at most 100 years (a longer one is a typo; ``off`` keeps for ever).
MIN_RETENTION = timedelta(hours=1)
MAX_RETENTION = timedelta(days=36525)
_RETENTION = re.compile(r"(-?)([0-9]+)([hdwy])")
#: A year is 365 days (a retention counts days, not calendar years).
_RETENTION_HOURS = {"h": 1, "d": 24, "w": 7 * 24, "y": 365 * 24}
_MAX_HOURS = MAX_RETENTION // MIN_RETENTION
_RETENTION_OFF = ("off", "none", "forever")


class TenantError(ValueError):
    """A tenant or credential operation was refused; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Tenant:
    tenant: str
    name: str
    default_region: str | None
    created_at: datetime
    legacy_ids_before: datetime | None = None
    """Events of this tenant that occurred before it keep the webhook event ids of before
    the tenant was part of them (migration 0007; None for tenants created since)."""
    transcript_retention: timedelta | None = None
    """How long the tenant's call transcripts (turn texts and passages) stay readable after
    the call, at least an hour; None keeps them for ever (migration 0009). The retention
    worker purges them once it is over; memories and summaries stay."""
    memory_retention: timedelta | None = None
    """How long the tenant's memories stay readable after the UTC day each was first
    extracted (or asserted), at least an hour; None keeps them for ever (migration 0011).
    Reinforcement does not extend it."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None
    scopes: tuple[str, ...] = ("admin",)
    allow_user_argument: bool = False

    def allows(self, *scopes: str) -> bool:
        """Whether the key has one of ``scopes`` (``admin`` has them all)."""
        return "admin" in self.scopes or any(s in self.scopes for s in scopes)


@dataclass(frozen=True)
class IssuedKey:
    """A new key: `token` is shown once and never stored."""

    key_id: str
    tenant: str
    token: str
    scopes: tuple[str, ...] = ("admin",)
    allow_user_argument: bool = False


@dataclass(frozen=True)
class WebhookSecret:
    secret_id: int
    tenant: str
    platform: str
    secret: str
    created_at: datetime
    revoked_at: datetime | None


_TENANT_COLUMNS = (
    "tenant, name, default_region, created_at, legacy_ids_before, transcript_retention,"
    " memory_retention"
)


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_tenant(
    conn: AsyncConnection[Any],
    tenant: str,
    name: str | None = None,
    default_region: str | None = None,
) -> Tenant:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise TenantError(
            "invalid_tenant",
            "a tenant id is 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter"
            " or digit",
        )
    if default_region is not None and not re.fullmatch(r"[A-Z]{2}", default_region):
        raise TenantError("invalid_region", "the default region is an ISO 3166 code like 'US'")
    cursor = conn.cursor(row_factory=class_row(Tenant))
    try:
        await cursor.execute(
            "INSERT INTO memstream.tenants (tenant, name, default_region) VALUES (%s, %s, %s)"
            f" RETURNING {_TENANT_COLUMNS}",
            [tenant, name or tenant, default_region],
        )
    except errors.UniqueViolation:
        raise TenantError("tenant_exists", f"tenant {tenant!r} exists already") from None
    row = await cursor.fetchone()
    assert row is not None
    return row


async def get_tenant(conn: AsyncConnection[Any], tenant: str) -> Tenant | None:
    cursor = conn.cursor(row_factory=class_row(Tenant))
    await cursor.execute(
        f"SELECT {_TENANT_COLUMNS} FROM memstream.tenants WHERE tenant = %s",
        [tenant],
    )
    return await cursor.fetchone()


async def list_tenants(conn: AsyncConnection[Any]) -> list[Tenant]:
    cursor = conn.cursor(row_factory=class_row(Tenant))
    await cursor.execute(f"SELECT {_TENANT_COLUMNS} FROM memstream.tenants ORDER BY tenant")
    return await cursor.fetchall()


def _unknown_tenant(tenant: str) -> TenantError:
    return TenantError("unknown_tenant", f"no tenant {tenant!r}")


async def _require_tenant(conn: AsyncConnection[Any], tenant: str) -> None:
    if await get_tenant(conn, tenant) is None:
        raise _unknown_tenant(tenant)


# -- transcript and memory retention ----------------------------------------------------

#: What each retention is of: its column in memstream.tenants, and what it keeps.
RETENTIONS = {"transcript": "transcript_retention", "memory": "memory_retention"}
_KEPT = {"transcript": "transcripts", "memory": "memories"}


def parse_retention(text: str, what: str = "transcript") -> timedelta | None:
    """A `what` retention (``transcript`` or ``memory``) as written on the command line:
    hours, days, weeks or years of 365 days (``36h``, ``90d``, ``2w``, ``1y``), or ``off``
    / ``none`` / ``forever`` for None (kept for ever). Anything else, and a retention under
    an hour or over 100 years, is refused."""
    kept = _KEPT[what]
    word = text.strip().lower()
    if word in _RETENTION_OFF:
        return None
    match = _RETENTION.fullmatch(word)
    if match is None:
        raise TenantError(
            "invalid_retention",
            f"a {what} retention is a number of hours, days, weeks or years (36h, 90d, 2w,"
            f" 1y), or 'off' to keep {kept} for ever; got {text!r}",
        )
    sign, amount, unit = match.groups()
    digits = amount.lstrip("0")
    if sign == "-" or not digits:
        raise TenantError(
            "invalid_retention", f"a {what} retention is at least 1 hour; got {text!r}"
        )
    # Counted in whole hours: ten digits are over 100 years in any unit, and a long run of
    # them would overflow a timedelta (or int()).
    if len(digits) >= 10 or (hours := int(digits) * _RETENTION_HOURS[unit]) > _MAX_HOURS:
        raise TenantError(
            "invalid_retention",
            f"a {what} retention is at most 100 years ('off' keeps {kept} for ever); got {text!r}",
        )
    return timedelta(hours=hours)


async def set_transcript_retention(
    conn: AsyncConnection[Any], tenant: str, retention: timedelta | None
) -> Tenant:
    """Keep the tenant's transcripts readable for ``retention`` after each call (None: for
    ever). The retention worker carries it out on its next pass."""
    return await set_retention(conn, tenant, "transcript", retention)


async def set_memory_retention(
    conn: AsyncConnection[Any], tenant: str, retention: timedelta | None
) -> Tenant:
    """Keep the tenant's memories readable for ``retention`` after the day each was first
    said (None: for ever). The retention worker carries it out on its next pass."""
    return await set_retention(conn, tenant, "memory", retention)


async def set_retention(
    conn: AsyncConnection[Any], tenant: str, what: str, retention: timedelta | None
) -> Tenant:
    """Set the tenant's `what` retention (``transcript`` or ``memory``; None: for ever)."""
    column = RETENTIONS[what]
    if retention is not None and not MIN_RETENTION <= retention <= MAX_RETENTION:
        raise TenantError(
            "invalid_retention",
            f"a {what} retention is between 1 hour and 100 years; got {retention}",
        )
    cursor = conn.cursor(row_factory=class_row(Tenant))
    await cursor.execute(
        f"UPDATE memstream.tenants SET {column} = %s WHERE tenant = %s RETURNING {_TENANT_COLUMNS}",
        [retention, tenant],
    )
    row = await cursor.fetchone()
    if row is None:
        raise _unknown_tenant(tenant)
    return row


# -- API keys ---------------------------------------------------------------------------


async def issue_api_key(
    conn: AsyncConnection[Any],
    tenant: str,
    label: str | None = None,
    scopes: Sequence[str] = ("admin",),
    *,
    allow_user_argument: bool = False,
) -> IssuedKey:
    """A new key with ``scopes`` (see :data:`SCOPES`)."""
    scopes = tuple(dict.fromkeys(scopes))
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise TenantError(
            "invalid_scope", f"scopes are one or more of {', '.join(SCOPES)} (got {unknown})"
        )
    await _require_tenant(conn, tenant)
    key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    secret = secrets.token_urlsafe(32)  # 43 characters
    await conn.execute(
        "INSERT INTO memstream.api_keys"
        " (key_id, tenant, secret_hash, label, scopes, allow_user_argument)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        [key_id, tenant, _hash(secret), label, list(scopes), allow_user_argument],
    )
    return IssuedKey(
        key_id=key_id,
        tenant=tenant,
        token=f"msk_{key_id}_{secret}",
        scopes=scopes,
        allow_user_argument=allow_user_argument,
    )


_KEY_COLUMNS = "key_id, tenant, label, created_at, revoked_at, scopes, allow_user_argument"


def _api_key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        key_id=row[0],
        tenant=row[1],
        label=row[2],
        created_at=row[3],
        revoked_at=row[4],
        scopes=tuple(row[5]),
        allow_user_argument=row[6],
    )


async def authenticate_api_key(conn: AsyncConnection[Any], token: str) -> ApiKey | None:
    """The active key this token proves, or None (unknown, wrong secret, revoked, malformed)."""
    match = _TOKEN.match(token)
    if match is None:
        return None
    key_id, secret = match.groups()
    cursor = await conn.execute(
        f"SELECT {_KEY_COLUMNS}, secret_hash FROM memstream.api_keys WHERE key_id = %s",
        [key_id],
    )
    row = await cursor.fetchone()
    # Hash and compare even when the key is unknown: the answer takes the same time.
    expected = bytes(row[-1]) if row else _hash("")
    if not hmac.compare_digest(_hash(secret), expected) or row is None or row[4] is not None:
        return None
    return _api_key(row)


async def list_api_keys(conn: AsyncConnection[Any], tenant: str) -> list[ApiKey]:
    cursor = await conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM memstream.api_keys WHERE tenant = %s ORDER BY created_at",
        [tenant],
    )
    return [_api_key(row) for row in await cursor.fetchall()]


async def revoke_api_key(conn: AsyncConnection[Any], key_id: str) -> bool:
    """Revoke a key; False if there is no such active key."""
    cursor = await conn.execute(
        "UPDATE memstream.api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
        [key_id],
    )
    return cursor.rowcount == 1


# -- webhook secrets --------------------------------------------------------------------


async def add_webhook_secret(
    conn: AsyncConnection[Any], tenant: str, platform: str, secret: str | None = None
) -> WebhookSecret:
    """Add an active secret (generated when not given: the platform is then told it)."""
    if platform not in PLATFORMS:
        raise TenantError("invalid_platform", f"platform must be one of {', '.join(PLATFORMS)}")
    if secret is not None and len(secret) < 16:
        raise TenantError("weak_secret", "a webhook secret has at least 16 characters")
    await _require_tenant(conn, tenant)
    cursor = conn.cursor(row_factory=class_row(WebhookSecret))
    await cursor.execute(
        "INSERT INTO memstream.webhook_secrets (tenant, platform, secret) VALUES (%s, %s, %s)"
        " RETURNING secret_id, tenant, platform, secret, created_at, revoked_at",
        [tenant, platform, secret or f"whsec_{secrets.token_urlsafe(32)}"],
    )
    row = await cursor.fetchone()
    assert row is not None
    return row


async def active_webhook_secrets(
    conn: AsyncConnection[Any], tenant: str, platform: str
) -> list[str]:
    cursor = await conn.execute(
        "SELECT secret FROM memstream.webhook_secrets"
        " WHERE tenant = %s AND platform = %s AND revoked_at IS NULL ORDER BY secret_id",
        [tenant, platform],
    )
    return [row[0] for row in await cursor.fetchall()]


async def list_webhook_secrets(conn: AsyncConnection[Any], tenant: str) -> list[WebhookSecret]:
    cursor = conn.cursor(row_factory=class_row(WebhookSecret))
    await cursor.execute(
        "SELECT secret_id, tenant, platform, secret, created_at, revoked_at"
        " FROM memstream.webhook_secrets WHERE tenant = %s ORDER BY secret_id",
        [tenant],
    )
    return await cursor.fetchall()


async def revoke_webhook_secret(conn: AsyncConnection[Any], secret_id: int) -> bool:
    cursor = await conn.execute(
        "UPDATE memstream.webhook_secrets SET revoked_at = now()"
        " WHERE secret_id = %s AND revoked_at IS NULL",
        [secret_id],
    )
    return cursor.rowcount == 1
