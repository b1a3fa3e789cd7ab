"""What every `memstream` subcommand shares: exit codes, endpoints, the --json flag.

Exit codes (documented in ``memstream --help`` and docs/operations.md), for scripts:

    0   success
    1   unexpected failure
    2   bad usage, configuration or input
    3   infrastructure unreachable (broker or database)
    4   not found (no such projection version, dead letter, key, ...)
    5   not done: a wait ran out of time, or the work is incomplete (e.g. a rebuild
        that has not caught up, a DLQ replay with events still failing)
    130 interrupted (Ctrl-C)

Output: human text by default, ``--json`` for scripts (the helpers are in
services/cli/render.py). Errors go to stderr as ``memstream: <message>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

from infra import local
from infra.migrate import migrate
from services.settings import Settings
from streams import database
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


def add_json_flag(
    parser: argparse.ArgumentParser, help: str = "machine-readable output (JSON)"
) -> None:
    parser.add_argument("--json", action="store_true", help=help)


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
