"""`memstream projections` and `memstream reprocess`: running, rebuilding and switching
projection versions (being written)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime

from infra.migrate import migrate
from projections import PROJECTIONS, build
from services.cli.common import Commands, require_endpoints
from services.cli.serve import serve
from streams import Settings
from streams.runtime import ProjectionRunner


def register(commands: Commands) -> None:
    """Add `projections` and `reprocess` to the `memstream` parser."""
    projections = commands.add_parser("projections", help="run, inspect and rebuild projections")
    actions = projections.add_subparsers(
        dest="projections_command", required=True, metavar="ACTION"
    )
    run_one = actions.add_parser(
        "run",
        help="run one projection as a member of its consumer group (start several to scale)",
    )
    run_one.add_argument("name", choices=sorted(PROJECTIONS), help="projection name")
    run_one.add_argument("--version", type=int, default=1, help="projection version (default 1)")
    run_one.add_argument(
        "--since",
        type=datetime.fromisoformat,
        default=None,
        help="for a new version: start from this ISO-8601 time instead of the earliest offset",
    )
    run_one.set_defaults(handler=_projection_run)


def _projection_run(settings: Settings, args: argparse.Namespace) -> int:
    settings = require_endpoints(settings)
    migrate(settings.require_database())
    runner = ProjectionRunner(
        build(args.name, settings),
        settings,
        version=args.version,
        start_at=args.since,
    )
    return asyncio.run(serve(settings, [runner], []))
