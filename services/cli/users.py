"""``memstream users forget|export``: a caller's right to be forgotten, and to their data.

``forget`` does what ``DELETE /v1/users/{user}`` does (services/personal_data.py): it
appends ``user.forgotten`` (destroying the user's data key first), then shows the
projections passing it until every read model has purged the user, or ``--timeout``.
``export`` writes what ``GET /v1/users/{user}/export`` answers: everything held about the
user as one JSON document, with a progress bar over the log scan. Runbook:
docs/operations.md, "A caller asks to be forgotten, or for their data".
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from typing import IO, Any

from services.cli.common import (
    EXIT_INCOMPLETE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Commands,
    add_json_flag,
    require_endpoints,
)
from services.cli.render import emit, err_console, progress
from services.settings import Settings
from streams.audit import ERASURE, READ, append_entry
from streams.topics import CONVERSATIONS

#: Between two looks at the projections' checkpoints while `forget` waits.
_POLL_MS = 500


def register(commands: Commands) -> None:
    """Add ``memstream users forget|export`` to the `memstream` parser."""
    users = commands.add_parser(
        "users",
        help="a caller's personal data: forget them, or export everything held about them",
        description="Erasure and export of one user (docs/security.md, 'Erasure and "
        "export'). USER is the part of the subject after TENANT/: an E.164 number such as "
        "+14155550123, or the tenant's own user id.",
    )
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    forget = actions.add_parser(
        "forget",
        help="erase a user: destroy their key, append user.forgotten, wait for the purge",
        description="Destroy the user's data key (what the log holds of them becomes "
        "unreadable) and append user.forgotten; then wait until every live projection has "
        "applied it, i.e. every read model has deleted the user. Idempotent: forgetting a "
        "user memstream does not know, or already forgot, does the same and succeeds.",
        epilog="Exit codes: 0 forgotten (with --no-wait: erasure appended); 5 appended but "
        "not purged everywhere within --timeout (the position to wait on is printed); 3 "
        "broker or database unreachable.",
    )
    forget.add_argument("tenant", metavar="TENANT")
    forget.add_argument("user", metavar="USER")
    forget.add_argument("--reason", help="why (sealed in the event, e.g. a ticket number)")
    forget.add_argument(
        "--no-wait", action="store_true", help="return once appended, without waiting"
    )
    forget.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for every read model to purge the user (default 60)",
    )
    add_json_flag(forget)
    forget.set_defaults(handler=_forget)

    export = actions.add_parser(
        "export",
        help="write everything held about a user as one JSON document",
        description="The user's read model rows (profile, memories in every state with "
        "provenance, conversations with turns, passages and summaries) and their events "
        "from the log, decrypted: what GET /v1/users/{user}/export answers. The log scan "
        "reads the user's partition of each topic (see docs/security.md for its cost).",
        epilog="Exit codes: 0 written; 4 memstream holds nothing about the user (unknown, "
        "or forgotten); 2 FILE not writable; 3 broker or database unreachable.",
    )
    export.add_argument("tenant", metavar="TENANT")
    export.add_argument("user", metavar="USER")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    export.set_defaults(handler=_export)


def _subject(args: argparse.Namespace) -> str:
    user = args.user.strip()
    if not user or "/" in args.tenant or not user.isprintable():
        raise CommandError("TENANT USER: a tenant id and a user such as +14155550123", EXIT_USAGE)
    return f"{args.tenant}/{user}"


# -- forget --------------------------------------------------------------------------------


def _forget(settings: Settings, args: argparse.Namespace) -> int:
    subject = _subject(args)
    settings = require_endpoints(settings)
    from infra.migrate import migrate

    migrate(settings.require_database())
    return asyncio.run(_forget_user(settings, args, subject))


async def _forget_user(settings: Settings, args: argparse.Namespace, subject: str) -> int:
    # Imported here: the services' modules pull in FastAPI, which other commands skip.
    from services import personal_data
    from services.database import connection_pool
    from streams import EventLog

    tenant = args.tenant
    pool = connection_pool(settings, min_size=1, max_size=2)
    await pool.open(wait=True, timeout=10)
    try:
        async with pool.connection() as conn:
            held = await personal_data.held(conn, tenant, subject)
        event = personal_data.erasure(
            tenant, subject, requested_by=f"cli:{getpass.getuser()}", reason=args.reason
        )
        async with EventLog(settings) as log:
            appended = await log.append(event)  # destroys the key, then appends
        await append_entry(settings, ERASURE, tenant, subject, route="memstream users forget")
        assert appended is not None  # the log refuses no user.forgotten
        position = appended.token()
        readers = await personal_data.live_readers(pool)
        waited = {n: t for n, t in readers.items() if CONVERSATIONS in t}
        behind = {name: position for name in waited}
        if not args.no_wait:
            behind = await _wait(pool, settings, position, readers, args.timeout)
        personal_data.record_erasure(event, position, held, behind)
    finally:
        await pool.close()

    result = {
        "user": args.user,
        "tenant": tenant,
        "status": "forgotten" if not behind else ("appended" if args.no_wait else "pending"),
        "event_id": str(event.id),
        "forgotten_at": event.occurred_at.isoformat(),
        "position": position,
        "held": held,
        "projections": sorted(waited),
        "waiting_for": behind,
    }
    what = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in held.items() if n) or "nothing"
    if not behind:
        text = (f"forgot {subject}: the read models held {what}; every read model has purged"
                f" it ({len(waited)} projections). Log position {position}.")  # fmt: skip
    elif args.no_wait:
        text = (f"erasure of {subject} appended at {position} (its key is destroyed); the read"
                f" models purge it as they apply it. They held {what}.")  # fmt: skip
    else:
        lagging = ", ".join(f"{name} at {at}" for name, at in sorted(behind.items()))
        text = (f"erasure of {subject} appended at {position} (its key is destroyed), but not"
                f" yet applied by: {lagging}. Wait on that position (X-Memstream-After), or"
                " check `memstream projections status`.")  # fmt: skip
    emit(args, result, text)
    return EXIT_INCOMPLETE if behind and not args.no_wait else EXIT_OK


async def _wait(
    pool: Any,
    settings: Settings,
    position: str,
    readers: dict[str, tuple[str, ...]],
    timeout: float,
) -> dict[str, str]:
    """Wait until every projection in `readers` consuming the position's topic is past
    it, with a progress bar of how many are; what is still behind at the deadline."""
    from services import personal_data

    total = sum(CONVERSATIONS in topics for topics in readers.values())
    deadline = time.monotonic() + timeout
    with progress() as bar:
        task = bar.add_task("purging", total=total)
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            behind = await personal_data.wait_purged(
                pool,
                position,
                topic_prefix=settings.topic_prefix,
                wait_ms=max(0, min(_POLL_MS, left_ms)),
                readers=readers,
            )
            bar.update(task, completed=total - len(behind))
            if not behind or left_ms <= 0:
                return behind


# -- export --------------------------------------------------------------------------------


def _export(settings: Settings, args: argparse.Namespace) -> int:
    subject = _subject(args)
    settings = require_endpoints(settings)
    from infra.migrate import migrate

    migrate(settings.require_database())
    if args.output is None:
        return asyncio.run(_export_user(settings, subject, sys.stdout.buffer, None))
    try:
        out = open(args.output, "wb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror}", EXIT_USAGE) from None
    with out:
        return asyncio.run(_export_user(settings, subject, out, args.output))


async def _export_user(settings: Settings, subject: str, out: IO[bytes], path: str | None) -> int:
    from services import personal_data
    from services.database import connection_pool

    pool = connection_pool(settings, min_size=1, max_size=2)
    await pool.open(wait=True, timeout=10)
    try:
        export = await personal_data.Export.open(pool, settings, subject.partition("/")[0], subject)
        if export is None:
            raise CommandError(
                f"memstream holds nothing about {subject} (unknown, or forgotten)",
                EXIT_NOT_FOUND,
            )
        await append_entry(settings, READ, export.tenant, subject, route="memstream users export")
        written = 0
        with progress(transient=True) as bar:
            task = bar.add_task("scanning the log", total=None)

            def scanned(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            async for chunk in export.chunks(scanned):
                out.write(chunk)
                written += len(chunk)
        out.flush()
    finally:
        await pool.close()
    scan = export.scan
    errors = err_console()
    if path is None and not errors.is_terminal:
        return EXIT_OK
    errors.print(
        f"{written:,} bytes{f' to {path}' if path else ''}: {scan.events} events of the user"
        f" among {scan.records_read:,} records read on {scan.partitions} partitions"
        + (f"; {scan.erased} sealed before an erasure" if scan.erased else "")
    )
    return EXIT_OK
