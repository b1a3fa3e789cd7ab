"""`memstream retention run`: carry out the tenants' transcript retention now
(services/retention.py; docs/operations.md, "Transcript retention").

    memstream retention run [--tenant T] [--json]

``memstream run`` does the same every ``MEMSTREAM_RETENTION_INTERVAL_S`` (an hour); this
is for a deployment that runs the services apart, from cron or a Kubernetes CronJob.
"""

from __future__ import annotations

import argparse
from typing import Any

from psycopg import AsyncConnection

from services.cli.common import EXIT_OK, Commands, add_json_flag, emit, with_database
from services.retention import expire_transcripts
from streams import Settings


def register(commands: Commands) -> None:
    """Add `retention` to the `memstream` parser."""
    retention = commands.add_parser(
        "retention", help="transcript retention: expire what is past each tenant's period"
    ).add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    run = retention.add_parser(
        "run",
        help="expire the transcripts past each tenant's retention now",
        description="For every tenant with a transcript retention (memstream tenants update "
        "TENANT --transcript-retention 90d), the calls that began before the UTC day the "
        "retention reaches lose their transcript: the keys of those days are destroyed, so "
        "the log's copies no longer decrypt, and the turns, passages and passage vectors "
        "are deleted from the read models. Memories and summaries stay. Safe to run again "
        "at any time; `memstream run` does it every hour.",
    )
    run.add_argument("--tenant", help="only this tenant")
    add_json_flag(run)
    run.set_defaults(handler=_run)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        done = await expire_transcripts(conn, tenant=args.tenant)
        lines = [
            f"{e.tenant}: calls before {e.before.date().isoformat()} expired"
            f" ({e.period_keys} day keys destroyed; "
            + ", ".join(f"{count} {what}" for what, count in e.rows.items())
            + ")"
            for e in done
        ]
        document = [
            {
                "tenant": e.tenant,
                "retention_s": int(e.retention.total_seconds()),
                "expired_before": e.before.isoformat(),
                "period_keys": e.period_keys,
                "rows": e.rows,
            }
            for e in done
        ]
        emit(args, document, "\n".join(lines) or "no tenant has a transcript retention")
        return EXIT_OK

    return with_database(work, settings)
