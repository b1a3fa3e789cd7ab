"""What every `memstream` subcommand shares: exit codes, endpoints, output.

Exit codes (documented in ``memstream --help`` and docs/operations.md), for scripts:

    0   success
    1   unexpected failure
    2   bad usage, configuration or input
    3   infrastructure unreachable (broker or database)
    4   not found (no such projection version, dead letter, key, ...)
    5   not done: a wait ran out of time, or the work is incomplete (e.g. a rebuild
        that has not caught up, a DLQ replay with events still failing)
    130 interrupted (Ctrl-C)

Output: human text by default (rich on a terminal); ``--json`` prints one JSON document
(or one JSON object a line for streams such as ``log tail``) on stdout. Errors go to
stderr as ``memstream: <message>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from infra import local
from infra.migrate import migrate
from streams import Settings, database
from streams.subject_keys import install_personal_codec

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4
EXIT_INCOMPLETE = 5
EXIT_INTERRUPTED = 130

#: Subparsers of the top-level parser (what a command module's `register` receives).
if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction


class CommandError(Exception):
    """A command failed in a way the user can act on: message to stderr, exit `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def console() -> Console:
    """Human output (stdout); plain text when it is not a terminal."""
    return Console(highlight=False, soft_wrap=True)


def err_console() -> Console:
    """Progress bars and notes (stderr), so stdout stays clean for pipes and --json."""
    return Console(stderr=True, highlight=False)


def progress(*, disable: bool = False, transient: bool = False, rate: bool = False) -> Progress:
    """The progress bar of long work, on stderr: what, bar, done/total, (a `rate` field,
    events/s), elapsed, ETA. Off when stderr is not a terminal or `disable`."""
    err = err_console()
    columns: list[Any] = [TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(TextColumn("{task.fields[rate]:>9} ev/s"))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(
        *columns, console=err, transient=transient, disable=disable or not err.is_terminal
    )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output (JSON)")


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    """`value` as JSON with --json, else `text`."""
    print(json.dumps(value, default=str) if getattr(args, "json", False) else text)


def require_database(settings: Settings) -> Settings:
    """The configured database, or the local one if it is running; the personal data
    codec is installed on it (its keys live there: nothing decodes without them)."""
    status = local.status(settings)
    if settings.database_url is None and status["postgres"].get("running"):
        settings = settings.replace(database_url=status["postgres"]["endpoint"])
    settings.require_database()
    install_personal_codec(settings)
    return settings


def require_endpoints(settings: Settings) -> Settings:
    """Configured endpoints, or the local infrastructure's if it is running."""
    settings = require_database(settings)
    status = local.status(settings)
    if settings.kafka_bootstrap is None and status["kafka"].get("running"):
        settings = settings.replace(kafka_bootstrap=status["kafka"]["endpoint"])
    settings.require_kafka()
    return settings


async def connect(settings: Settings) -> AsyncConnection[Any]:
    """An autocommit connection to the database (DatabaseUnavailable if it does not answer)."""
    return await database.connect(settings.require_database())


def with_database(
    work: Callable[[AsyncConnection[Any]], Awaitable[int]], settings: Settings
) -> int:
    """Run `work` with a database connection (local or configured; migrations applied)."""
    settings = require_database(settings)
    migrate(settings.require_database())

    async def run() -> int:
        async with await connect(settings) as conn:
            return await work(conn)

    return asyncio.run(run())


def fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"memstream: {message}", file=sys.stderr)
    return code
