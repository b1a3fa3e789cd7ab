"""`memstream encryption`: the keys that seal personal data (streams/subject_keys.py).

    memstream encryption status          master key in use; subject keys by master key
    memstream encryption rotate-master   re-wrap every key with MEMSTREAM_MASTER_KEY

Rotating the master key (docs/operations.md): give every process the new key as
MEMSTREAM_MASTER_KEY and the old one in MEMSTREAM_PREVIOUS_MASTER_KEYS, run
``rotate-master`` once, then remove the old key. Data keys never change, so nothing in
the log is rewritten.
"""

from __future__ import annotations

import argparse
from typing import Any

from psycopg import AsyncConnection

from services.cli.common import EXIT_OK, Commands, add_json_flag, with_database
from services.cli.render import emit
from services.settings import Settings
from streams.subject_keys import load_master_keys, rotate_master_key


def register(commands: Commands) -> None:
    """Add `encryption status|rotate-master` to the `memstream` parser."""
    encryption = commands.add_parser(
        "encryption",
        help="the keys that seal personal data: status, master key rotation",
        description="Every subject's personal data is sealed with a key of its own, wrapped "
        "by the master key (MEMSTREAM_MASTER_KEY). Erasure destroys the subject's key.",
    )
    actions = encryption.add_subparsers(dest="encryption_command", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status",
        help="the master key in use, and the subject keys per master key",
        description="The id of the configured master key, and how many subject keys are "
        "live or destroyed, per master key that wraps them (destroyed ones have none).",
    )
    add_json_flag(status)
    status.set_defaults(handler=_status)
    rotate = actions.add_parser(
        "rotate-master",
        help="re-wrap every key with MEMSTREAM_MASTER_KEY (the old one in "
        "MEMSTREAM_PREVIOUS_MASTER_KEYS)",
        description="Re-wrap every subject key and deployment key wrapped by a previous "
        "master key with the current one. Run it after every process has the new key; "
        "then remove the old one from MEMSTREAM_PREVIOUS_MASTER_KEYS. Idempotent.",
    )
    add_json_flag(rotate)
    rotate.set_defaults(handler=_rotate)


def _status(settings: Settings, args: argparse.Namespace) -> int:
    master = load_master_keys(settings)

    async def work(conn: AsyncConnection[Any]) -> int:
        cursor = await conn.execute(
            "SELECT coalesce(master_key_id, '(destroyed)'), count(*)"
            " FROM memstream.subject_keys GROUP BY 1 ORDER BY 1"
        )
        keys = {row[0]: row[1] for row in await cursor.fetchall()}
        document = {"master_key_id": master.current.id, "subject_keys": keys}
        lines = [f"master key {master.current.id}"] + [
            f"  {count:>9} subject keys "
            + ("destroyed" if mid == "(destroyed)" else f"wrapped by {mid}")
            for mid, count in keys.items()
        ]
        emit(args, document, "\n".join(lines))
        return EXIT_OK

    return with_database(work, settings)


def _rotate(settings: Settings, args: argparse.Namespace) -> int:
    master = load_master_keys(settings)

    async def work(conn: AsyncConnection[Any]) -> int:
        rewrapped = await rotate_master_key(conn, master)
        emit(
            args,
            {"master_key_id": master.current.id, "rewrapped": rewrapped},
            f"re-wrapped {rewrapped} keys with master key {master.current.id}",
        )
        return EXIT_OK

    return with_database(work, settings)
