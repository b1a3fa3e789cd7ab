"""``memstream secrets add|list|revoke``: a tenant's webhook secrets (services/tenants.py).

    memstream secrets add --tenant T --platform P [--secret S]
    memstream secrets list --tenant T
    memstream secrets revoke SECRET_ID

Several secrets of a platform may be active at once: rotation is add, switch the platform
over, then revoke the old one. ``list`` never prints the secrets themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from psycopg import AsyncConnection

from services import tenants as tenants_store
from services.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    Commands,
    add_json_flag,
    with_database,
)
from services.cli.render import emit, lines_or
from services.settings import Settings
from services.tenants import PLATFORMS, WebhookSecret


def register(commands: Commands) -> None:
    """Add `secrets add|list|revoke` to the `memstream` parser."""
    webhook = commands.add_parser("secrets", help="webhook secrets").add_subparsers(
        dest="secrets_command", required=True, metavar="ACTION"
    )
    add = webhook.add_parser(
        "add", help="add an active webhook secret (generated unless --secret); rotation: add, "
        "switch the platform over, then revoke the old one",
    )  # fmt: skip
    add.add_argument("--tenant", required=True)
    add.add_argument("--platform", required=True, choices=PLATFORMS)
    add.add_argument("--secret", help="the platform's secret (default: generate one)")
    add_json_flag(add, help="machine-readable output")
    add.set_defaults(handler=_add)

    listing = webhook.add_parser("list", help="a tenant's webhook secrets")
    listing.add_argument("--tenant", required=True)
    add_json_flag(listing, help="machine-readable output")
    listing.set_defaults(handler=_list)

    revoke = webhook.add_parser("revoke", help="revoke a webhook secret by its id")
    revoke.add_argument("secret_id", type=int)
    add_json_flag(revoke, help="machine-readable output")
    revoke.set_defaults(handler=_revoke)


# -- handlers: the work against the database ---------------------------------------------


def _add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        added = await tenants_store.add_webhook_secret(
            conn, args.tenant, args.platform, args.secret
        )
        text = f"secret {added.secret_id} for {added.tenant}/{added.platform}: {added.secret}"
        emit(args, dataclasses.asdict(added), text)
        return EXIT_OK

    return with_database(work, settings)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        found = await tenants_store.list_webhook_secrets(conn, args.tenant)
        emit(args, _list_json(found), _list_text(found))
        return EXIT_OK

    return with_database(work, settings)


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        revoked = await tenants_store.revoke_webhook_secret(conn, args.secret_id)
        emit(args, {"revoked": revoked}, "revoked" if revoked else "no such active secret")
        return EXIT_OK if revoked else EXIT_NOT_FOUND

    return with_database(work, settings)


# -- rendering -----------------------------------------------------------------------------


def _list_json(found: list[WebhookSecret]) -> list[dict[str, Any]]:
    # Listing never prints the secrets themselves.
    return [{k: v for k, v in dataclasses.asdict(w).items() if k != "secret"} for w in found]


def _list_text(found: list[WebhookSecret]) -> str:
    return lines_or(
        [
            f"{w.secret_id:>5}  {w.platform:<16} {'revoked' if w.revoked_at else 'active'}"
            for w in found
        ],
        "no secrets",
    )
