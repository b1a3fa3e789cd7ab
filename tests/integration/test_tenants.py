"""Tenants, API keys and webhook secrets in PostgreSQL, and their CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from services import tenants
from services.settings import Settings
from services.tenants import TenantError
from tests.helpers import scalar


async def test_an_issued_key_authenticates_as_its_tenant_and_is_stored_hashed(db: Any) -> None:
    await tenants.create_tenant(db, "acme", "Acme Dental")
    issued = await tenants.issue_api_key(db, "acme", label="ingest")
    key = await tenants.authenticate_api_key(db, issued.token)
    assert key is not None and key.tenant == "acme" and key.key_id == issued.key_id
    secret = issued.token.rsplit("_", 1)[1]
    stored = await scalar(
        db, "SELECT secret_hash FROM memstream.api_keys WHERE key_id = %s", key.key_id
    )
    assert secret.encode() not in bytes(stored) and len(bytes(stored)) == 32


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # wrong secret
        lambda token: token.replace("msk_", "msx_"),  # malformed
        lambda token: "msk_" + "z" * 12 + "_" + token.rsplit("_", 1)[1],  # unknown key id
        lambda token: "",
    ],
)
async def test_a_wrong_or_malformed_token_authenticates_nobody(db: Any, mangle: Any) -> None:
    await tenants.create_tenant(db, "acme")
    issued = await tenants.issue_api_key(db, "acme")
    assert await tenants.authenticate_api_key(db, mangle(issued.token)) is None


async def test_a_revoked_key_no_longer_authenticates(db: Any) -> None:
    await tenants.create_tenant(db, "acme")
    issued = await tenants.issue_api_key(db, "acme")
    assert await tenants.revoke_api_key(db, issued.key_id) is True
    assert await tenants.authenticate_api_key(db, issued.token) is None
    assert await tenants.revoke_api_key(db, issued.key_id) is False


async def test_webhook_secrets_rotate_with_several_active_at_once(db: Any) -> None:
    await tenants.create_tenant(db, "acme")
    old = await tenants.add_webhook_secret(db, "acme", "elevenlabs", "wsec_old_secret_0001")
    new = await tenants.add_webhook_secret(db, "acme", "elevenlabs")
    assert new.secret.startswith("whsec_") and len(new.secret) > 32
    active = await tenants.active_webhook_secrets(db, "acme", "elevenlabs")
    assert active == ["wsec_old_secret_0001", new.secret]
    await tenants.revoke_webhook_secret(db, old.secret_id)
    assert await tenants.active_webhook_secrets(db, "acme", "elevenlabs") == [new.secret]
    assert await tenants.active_webhook_secrets(db, "acme", "vapi") == []


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda db: tenants.create_tenant(db, "Bad Tenant"), "invalid_tenant"),
        (lambda db: tenants.create_tenant(db, "acme2", default_region="usa"), "invalid_region"),
        (lambda db: tenants.issue_api_key(db, "nobody"), "unknown_tenant"),
        (lambda db: tenants.add_webhook_secret(db, "acme", "zoom"), "invalid_platform"),
        (lambda db: tenants.add_webhook_secret(db, "acme", "vapi", "short"), "weak_secret"),
        (lambda db: tenants.create_tenant(db, "acme"), "tenant_exists"),
        (
            lambda db: tenants.set_transcript_retention(db, "nobody", timedelta(days=1)),
            "unknown_tenant",
        ),
        (
            lambda db: tenants.set_transcript_retention(db, "acme", timedelta(minutes=59)),
            "invalid_retention",
        ),
    ],
)
async def test_invalid_requests_are_refused_with_a_code(db: Any, call: Any, code: str) -> None:
    await tenants.create_tenant(db, "acme")
    with pytest.raises(TenantError) as raised:
        await call(db)
    assert raised.value.code == code


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **settings.to_env()},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_cli_creates_a_tenant_issues_a_key_and_revokes_it(settings: Settings) -> None:
    assert _cli(settings, "tenants", "create", "acme", "--region", "US").returncode == 0
    created = _cli(settings, "keys", "create", "--tenant", "acme", "--json")
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    assert issued["token"].startswith(f"msk_{issued['key_id']}_")
    listed = json.loads(_cli(settings, "keys", "list", "--tenant", "acme", "--json").stdout)
    assert [k["key_id"] for k in listed] == [issued["key_id"]]
    assert "token" not in listed[0] and "secret_hash" not in listed[0]
    assert _cli(settings, "keys", "revoke", issued["key_id"]).returncode == 0
    assert _cli(settings, "keys", "revoke", issued["key_id"]).returncode == 4  # not found
    again = _cli(settings, "tenants", "create", "acme")
    assert again.returncode == 2 and "exists" in again.stderr


def test_the_cli_issues_scoped_keys_and_refuses_unknown_scopes(settings: Settings) -> None:
    assert _cli(settings, "tenants", "create", "acme").returncode == 0
    created = _cli(
        settings, "keys", "create", "--tenant", "acme", "--scope", "agent", "--scope", "read",
        "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["scopes"] == ["agent", "read"]
    plain = json.loads(_cli(settings, "keys", "create", "--tenant", "acme", "--json").stdout)
    assert plain["scopes"] == ["admin"] and plain["allow_user_argument"] is False
    listed = json.loads(_cli(settings, "keys", "list", "--tenant", "acme", "--json").stdout)
    assert [k["scopes"] for k in listed] == [["agent", "read"], ["admin"]]
    refused = _cli(settings, "keys", "create", "--tenant", "acme", "--scope", "root")
    assert refused.returncode == 2 and "invalid choice" in refused.stderr


async def test_the_cli_sets_and_lists_a_tenants_transcript_retention(
    settings: Settings, db: Any
) -> None:
    # Each command is a process (a second or so): the durations' grammar is unit-tested.
    await tenants.create_tenant(db, "acme", "Acme Dental")
    await tenants.create_tenant(db, "bayview")
    updated = _cli(settings, "tenants", "update", "acme", "--transcript-retention", "90d")
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.strip() == "tenant acme: transcripts kept for 90 days"
    stored = await scalar(
        db, "SELECT transcript_retention FROM memstream.tenants WHERE tenant = %s", "acme"
    )
    assert stored == timedelta(days=90)

    text = _cli(settings, "tenants", "list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("acme") and lines[0].endswith("transcripts: 90 days  memories: kept")
    assert lines[1].startswith("bayview") and lines[1].endswith("transcripts: kept  memories: kept")

    off = _cli(settings, "tenants", "update", "acme", "--transcript-retention", "off", "--json")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["transcript_retention_s"] is None
    found = await tenants.get_tenant(db, "acme")
    assert found is not None and found.transcript_retention is None

    bad = _cli(settings, "tenants", "update", "acme", "--transcript-retention", "0d")
    assert bad.returncode == 2 and bad.stderr.startswith("memstream: a transcript retention")
    unknown = _cli(settings, "tenants", "update", "nobody", "--transcript-retention", "90d")
    assert unknown.returncode == 4 and "no tenant 'nobody'" in unknown.stderr


async def test_a_key_made_before_scopes_existed_is_admin(db: Any) -> None:
    await tenants.create_tenant(db, "acme")
    issued = await tenants.issue_api_key(db, "acme")
    # As a row written by the version before scopes: the migration's defaults fill it in.
    await db.execute(
        "INSERT INTO memstream.api_keys (key_id, tenant, secret_hash)"
        " SELECT 'legacy0000ab', tenant, secret_hash FROM memstream.api_keys WHERE key_id = %s",
        [issued.key_id],
    )
    secret = issued.token.removeprefix(f"msk_{issued.key_id}_")
    legacy = await tenants.authenticate_api_key(db, f"msk_legacy0000ab_{secret}")
    assert legacy is not None and legacy.scopes == ("admin",)
    assert legacy.allows("read", "write", "ingest") and not legacy.allow_user_argument
    with pytest.raises(tenants.TenantError) as refused:
        await tenants.issue_api_key(db, "acme", scopes=["root"])
    assert refused.value.code == "invalid_scope"
