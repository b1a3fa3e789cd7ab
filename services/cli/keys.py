"""``memstream keys create|list|revoke``: a tenant's API keys (services/tenants.py).

    memstream keys create --tenant T [--label L] [--scope S ...] [--allow-user-argument]
    memstream keys list --tenant T
    memstream keys revoke KEY_ID

The token is shown once, when the key is issued; the database keeps only its hash, and
``list`` never prints a secret. What each scope allows: docs/security.md.
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
from services.tenants import ApiKey, IssuedKey


def register(commands: Commands) -> None:
    """Add `keys create|list|revoke` to the `memstream` parser."""
    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    create = keys.add_parser("create", help="issue an API key (the token is shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--label", help="what the key is for")
    create.add_argument(
        "--scope",
        action="append",
        choices=tenants_store.SCOPES,
        dest="scopes",
        help="what the key may do, repeatable (default: admin). A key pasted into a voice"
        " platform for the tools should be --scope agent (docs/security.md)",
    )
    create.add_argument(
        "--allow-user-argument",
        action="store_true",
        help="let the agent tools take the caller from a `user` argument when the platform"
        " binds none to the call (the argument is written by the LLM: docs/security.md)",
    )
    add_json_flag(create, help="machine-readable output")
    create.set_defaults(handler=_create)

    listing = keys.add_parser("list", help="a tenant's keys (never their secrets)")
    listing.add_argument("--tenant", required=True)
    add_json_flag(listing, help="machine-readable output")
    listing.set_defaults(handler=_list)

    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    add_json_flag(revoke, help="machine-readable output")
    revoke.set_defaults(handler=_revoke)


# -- handlers: the work against the database ---------------------------------------------


def _create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        issued = await tenants_store.issue_api_key(
            conn,
            args.tenant,
            args.label,
            args.scopes or ("admin",),
            allow_user_argument=args.allow_user_argument,
        )
        emit(args, dataclasses.asdict(issued), _issued_text(issued))
        return EXIT_OK

    return with_database(work, settings)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        found = await tenants_store.list_api_keys(conn, args.tenant)
        emit(args, [dataclasses.asdict(k) for k in found], _list_text(found))
        return EXIT_OK

    return with_database(work, settings)


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        revoked = await tenants_store.revoke_api_key(conn, args.key_id)
        emit(args, {"revoked": revoked}, "revoked" if revoked else "no such active key")
        return EXIT_OK if revoked else EXIT_NOT_FOUND

    return with_database(work, settings)


# -- rendering -----------------------------------------------------------------------------


def _issued_text(issued: IssuedKey) -> str:
    return (
        f"key {issued.key_id} for {issued.tenant} ({', '.join(issued.scopes)});"
        f" the token is shown only now:\n{issued.token}"
    )


def _list_text(found: list[ApiKey]) -> str:
    return lines_or(
        [
            f"{k.key_id}  {'revoked' if k.revoked_at else 'active ':<8}"
            f" {','.join(k.scopes):<24} {k.label or ''}"
            for k in found
        ],
        "no keys",
    )
