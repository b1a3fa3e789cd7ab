"""`memstream audit`: who read or erased a user's personal data (docs/security.md, "Audit
trail"), from the audit read model (projections/audit).

    memstream audit --tenant T --user USER [--since TIME] [--limit N] [--json]
    memstream audit --tenant T --key KEY_ID [...]       what one API key read

The user is named as the API names them (``+14155550123``); the command computes the
subject's hash (``streams.audit.subject_hash``, which needs the database's keys) and never
prints the user back with an entry: entries hold only the hash.
"""

from __future__ import annotations

import argparse
from typing import Any

from psycopg import AsyncConnection
from rich.text import Text

from projections.audit import audit_trail, entry_json
from services.cli.common import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CommandError,
    Commands,
    add_json_flag,
    with_database,
)
from services.cli.eventlog import parse_time
from services.cli.render import console, print_json
from services.settings import Settings
from streams.audit import subject_hash


def register(commands: Commands) -> None:
    """Add `audit` to the `memstream` parser."""
    audit = commands.add_parser(
        "audit",
        help="the audit trail: who read or erased a user's data, or what an API key read",
        description="Every read of a user's personal data through the query service (searches, "
        "each agent tool call, briefings, contexts, users, memories, conversations, exports) "
        "and every erasure, newest first: when, the route, the API key, the status answered "
        "and how many results. Entries name the user only by a keyed hash, and outlive the "
        "user's erasure. Read from the audit read model (the `audit` projection).",
        epilog="Example: memstream audit --tenant acme --user +14155550123 --since 30d",
    )
    audit.add_argument("--tenant", required=True)
    who = audit.add_argument_group("whose trail (one or both)")
    who.add_argument("--user", help="the user as the API names them, e.g. +14155550123")
    who.add_argument("--key", dest="key_id", metavar="KEY_ID", help="an API key's id")
    audit.add_argument(
        "--since",
        type=parse_time,
        metavar="TIME",
        help="entries at or after TIME: ISO 8601 (UTC unless it has an offset) or a duration "
        "ago such as 30m, 2h, 7d",
    )
    audit.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N entries")
    add_json_flag(audit)
    audit.set_defaults(handler=_audit)


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    if args.user is None and args.key_id is None:
        raise CommandError("give --user USER, --key KEY_ID, or both")

    async def work(conn: AsyncConnection[Any]) -> int:
        cursor = await conn.execute("SELECT to_regclass('audit.entries') IS NOT NULL")
        row = await cursor.fetchone()
        if not (row and row[0]):
            raise CommandError(
                "the audit read model is not built yet: `memstream run` (or `memstream "
                "projections run audit`) builds it",
                EXIT_UNAVAILABLE,
            )
        hashed = subject_hash(f"{args.tenant}/{args.user}") if args.user is not None else None
        rows = await audit_trail(
            conn,
            args.tenant,
            subject_hash=hashed,
            key_id=args.key_id,
            since=args.since,
            limit=args.limit,
        )
        entries = [entry_json(r) for r in rows]
        if args.json:
            print_json({"tenant": args.tenant, "subject_hash": hashed, "entries": entries})
        else:
            _print_trail(hashed, entries)
        return EXIT_OK

    # with_database installs the keys' codec: the hash is keyed with the deployment's key.
    return with_database(work, settings)


def _print_trail(hashed: str | None, entries: list[dict[str, Any]]) -> None:
    """One line an entry, newest first, then how many."""
    out = console()
    if hashed is not None:
        out.print(f"subject hash {hashed}")
    for e in entries:
        results = "-" if e["results"] is None else str(e["results"])
        call = f"  call {e['conversation_id']}" if e["conversation_id"] else ""
        out.print(
            Text(
                f"{e['at'][:23].replace('T', ' ')}  {e['type'].removeprefix('audit.'):<7}  "
                f"{e['route']}  key {e['key_id'] or '-'}  {e['status']}  "
                f"{results} result(s){call}"
            )
        )
    out.print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
