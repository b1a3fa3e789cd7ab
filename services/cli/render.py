"""How every `memstream` subcommand shows its results: the rendering helpers they share.

Human text by default (rich on a terminal, plain text in a pipe) on stdout; ``--json``
prints one JSON document (or one JSON object a line for streams such as ``log tail``) on
stdout; progress bars and notes go to stderr, so stdout stays clean for pipes and --json.

A command module keeps its argparse wiring, its work against the broker and database, and
its rendering in separate functions; what more than one of them renders the same way is
here.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


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


def print_json(value: Any) -> None:
    """`value` as one JSON document on stdout (what is not JSON, e.g. a time, as text)."""
    print(json.dumps(value, default=str))


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    """`value` as JSON with --json, else `text`."""
    if getattr(args, "json", False):
        print_json(value)
    else:
        print(text)


def lines_or(lines: list[str], nothing: str) -> str:
    """One line an item, or `nothing` when there is none."""
    return "\n".join(lines) or nothing


def duration(period: timedelta | None) -> str:
    """A retention period: ``90 days``, ``36 hours``, or ``kept`` (None: for ever)."""
    if period is None:
        return "kept"
    days, seconds = divmod(int(period.total_seconds()), 86400)
    if not seconds:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = int(period.total_seconds()) / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"
