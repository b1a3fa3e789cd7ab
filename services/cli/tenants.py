"""``memstream tenants create|list|update``: the tenants (services/tenants.py).

    memstream tenants create TENANT [--name N] [--region US] [--json]
    memstream tenants list [--json]
    memstream tenants update TENANT [--transcript-retention D] [--memory-retention D] [--json]

``update`` sets how long a tenant's transcripts and memories stay readable; the retention
worker (services/retention.py, ``memstream retention run``) carries it out.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from services import tenants as tenants_store
from services.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Commands,
    add_json_flag,
    with_database,
)
from services.cli.render import duration, emit, lines_or
from services.settings import Settings
from services.tenants import Tenant, TenantError


def register(commands: Commands) -> None:
    """Add `tenants create|list|update` to the `memstream` parser."""
    tenants = commands.add_parser("tenants", help="tenants").add_subparsers(
        dest="tenants_command", required=True, metavar="ACTION"
    )
    create = tenants.add_parser("create", help="create a tenant")
    create.add_argument("tenant", help="id: a-z, 0-9, '_' and '-' (used in URLs and subjects)")
    create.add_argument("--name", help="display name (default: the id)")
    create.add_argument("--region", help="ISO country for numbers without a country code, e.g. US")
    add_json_flag(create, help="machine-readable output")
    create.set_defaults(handler=_create)

    listing = tenants.add_parser("list", help="list tenants")
    add_json_flag(listing, help="machine-readable output")
    listing.set_defaults(handler=_list)

    update = tenants.add_parser(
        "update",
        help="set how long a tenant's transcripts and memories stay readable",
        description="Set how long a tenant's call transcripts, and its memories, stay "
        "readable. Once the transcript retention is over after the UTC day a call began in, "
        "the call's turn texts and passages are purged from the read models and their "
        "copies in the log no longer decrypt; memories and summaries stay. Once the memory "
        "retention is over after the UTC day a memory was first said in (reinforcement does "
        "not extend it), the memory, its vector and links are purged and its copies in the "
        "log no longer decrypt. The retention worker of `memstream run` does it every "
        "hour, `memstream retention run` at once (docs/operations.md).",
    )
    update.add_argument("tenant", help="the tenant's id")
    update.add_argument(
        "--transcript-retention",
        metavar="DURATION",
        help="hours, days, weeks or years (36h, 90d, 2w, 1y; 1 hour to 100 years), or off"
        " to keep transcripts for ever",
    )
    update.add_argument(
        "--memory-retention",
        metavar="DURATION",
        help="hours, days, weeks or years (36h, 365d, 52w, 1y; 1 hour to 100 years), or off"
        " to keep memories for ever",
    )
    add_json_flag(update, help="machine-readable output")
    update.set_defaults(handler=_update)


# -- handlers: the work against the database ---------------------------------------------


def _create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        tenant = await tenants_store.create_tenant(conn, args.tenant, args.name, args.region)
        emit(args, dataclasses.asdict(tenant), f"created tenant {tenant.tenant}")
        return EXIT_OK

    return with_database(work, settings)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        found = await tenants_store.list_tenants(conn)
        emit(args, [_tenant_json(t) for t in found], _list_text(found))
        return EXIT_OK

    return with_database(work, settings)


def _update(settings: Settings, args: argparse.Namespace) -> int:
    # Checked before connecting: a mistyped duration needs no database to be refused.
    retentions = _retentions(args)

    async def work(conn: AsyncConnection[Any]) -> int:
        try:
            async with conn.transaction():
                for what, retention in retentions.items():
                    tenant = await tenants_store.set_retention(conn, args.tenant, what, retention)
        except TenantError as exc:
            if exc.code != "unknown_tenant":
                raise
            raise CommandError(f"{exc} (memstream tenants list)", EXIT_NOT_FOUND) from None
        emit(args, _tenant_json(tenant), _update_text(tenant, retentions))
        return EXIT_OK

    return with_database(work, settings)


def _retentions(args: argparse.Namespace) -> dict[str, timedelta | None]:
    """The retentions `update` sets, by what they keep (``transcript``, ``memory``)."""
    given = {
        what: text
        for what, text in (
            ("transcript", args.transcript_retention),
            ("memory", args.memory_retention),
        )
        if text is not None
    }
    if not given:
        raise CommandError("say --transcript-retention, --memory-retention or both", EXIT_USAGE)
    return {what: tenants_store.parse_retention(text, what) for what, text in given.items()}


# -- rendering -----------------------------------------------------------------------------


def _tenant_json(tenant: Tenant) -> dict[str, Any]:
    """A tenant for --json: each retention in seconds (null: kept for ever)."""
    row = dataclasses.asdict(tenant)
    for column in tenants_store.RETENTIONS.values():
        retention = row.pop(column)
        row[f"{column}_s"] = None if retention is None else int(retention.total_seconds())
    return row


def _list_text(found: list[Tenant]) -> str:
    return lines_or(
        [
            f"{t.tenant:<24} {t.name:<24} transcripts: {duration(t.transcript_retention)}"
            f"  memories: {duration(t.memory_retention)}"
            for t in found
        ],
        "no tenants",
    )


def _update_text(tenant: Tenant, retentions: dict[str, timedelta | None]) -> str:
    said = []  # what was set
    for what, kept_what, retention in (
        ("transcript", "transcripts", tenant.transcript_retention),
        ("memory", "memories", tenant.memory_retention),
    ):
        if what in retentions:
            kept = "for ever" if retention is None else f"for {duration(retention)}"
            said.append(f"{kept_what} kept {kept}")
    return f"tenant {tenant.tenant}: {', '.join(said)}"
