"""`memstream retention run`: carry out the tenants' transcript and memory retention now
(services/retention.py; docs/operations.md, "Retention").

    memstream retention run [--tenant T] [--json]

``memstream run`` does the same every ``MEMSTREAM_RETENTION_INTERVAL_S`` (an hour); this
is for a deployment that runs the services apart, from cron or a Kubernetes CronJob.
"""

from __future__ import annotations

import argparse
from typing import Any

from psycopg import AsyncConnection

from services.cli.common import EXIT_OK, Commands, add_json_flag, with_database
from services.cli.render import emit
from services.retention import carry_out_retention
from services.settings import Settings


def register(commands: Commands) -> None:
    """Add `retention` to the `memstream` parser."""
    retention = commands.add_parser(
        "retention",
        help="transcript and memory retention: expire what is past each tenant's period",
    ).add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    run = retention.add_parser(
        "run",
        help="expire the transcripts and memories past each tenant's retention now",
        description="For every tenant with a transcript retention (memstream tenants update "
        "TENANT --transcript-retention 90d), the calls that began before the UTC day the "
        "retention reaches lose their transcript: the keys of those days are destroyed, so "
        "the log's copies no longer decrypt, and the turns, passages and passage vectors "
        "are deleted from the read models. For every tenant with a memory retention "
        "(--memory-retention 1y), the memories first said before the UTC day it reaches go "
        "the same way: their days' memory keys are destroyed, and the memories, their "
        "vectors, links and the extractor's facts of them are deleted. Safe to run again "
        "at any time; `memstream run` does it every hour.",
    )
    run.add_argument("--tenant", help="only this tenant")
    add_json_flag(run)
    run.set_defaults(handler=_run)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        done = await carry_out_retention(conn, tenant=args.tenant)
        lines = [
            f"{e.tenant}: {'calls' if e.what == 'transcripts' else 'memories first said'}"
            f" before {e.before.date().isoformat()} expired"
            f" ({e.period_keys} day keys of {e.what} destroyed; "
            + ", ".join(f"{count} {what}" for what, count in e.rows.items())
            + ")"
            for e in done
        ]
        document = [
            {
                "tenant": e.tenant,
                "what": e.what,
                "retention_s": int(e.retention.total_seconds()),
                "expired_before": e.before.isoformat(),
                "period_keys": e.period_keys,
                "rows": e.rows,
            }
            for e in done
        ]
        emit(args, document, "\n".join(lines) or "no tenant has a retention")
        return EXIT_OK

    return with_database(work, settings)
