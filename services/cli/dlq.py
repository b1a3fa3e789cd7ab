"""`memstream dlq`: inspect dead letters, replay them once the cause is fixed, purge the rest.

    memstream dlq list [--projection NAME] [--all]          pending letters (--all: resolved too)
    memstream dlq show ID                                    one letter: error, traceback, event
    memstream dlq replay ID ... | --all [--projection NAME]  project them, each exactly once
    memstream dlq purge ID ... | --all --yes [--reason TEXT] record that they are not projected

The logic (reading the DLQ topic, resolutions, the replay transaction) is in
``streams.dlq``; this module parses, selects letters and renders. A letter is named by its
id or any unique prefix of it (``list`` shows the first 8 characters).
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from rich.table import Table
from rich.text import Text

from projections import build
from services.cli.common import (
    EXIT_INCOMPLETE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Commands,
    add_json_flag,
    require_endpoints,
    with_database,
)
from services.cli.render import console, err_console, print_json, progress
from services.settings import Settings
from streams import DatabaseUnavailable
from streams import dlq as letters_store
from streams.dlq import DeadLetters, Outcome, StoredLetter

# A replay of at least this many letters shows a progress bar (on a terminal).
_PROGRESS_FROM = 10


def register(commands: Commands) -> None:
    """Add `dlq list|show|replay|purge` to the `memstream` parser."""
    dlq = commands.add_parser(
        "dlq",
        help="dead letters: events a projection could not handle (list, show, replay, purge)",
        description="A projection that keeps failing on an event (after MEMSTREAM_POISON_RETRIES "
        "retries) writes it to the DLQ topic with the error, and moves on. Nothing is lost: "
        "the letter stays on the topic forever. Inspect it, fix the cause, replay it (each "
        "letter is projected exactly once), or purge it (recorded, never deleted).",
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="pending dead letters (--all: resolved ones too)",
        description="List the pending dead letters (neither replayed nor purged), oldest "
        "failure first: id, projection and version, where the event was in the log, its type "
        "and id, the stage that failed (decode or apply), the error, when, and after how many "
        "attempts. A letter written twice (a runner crashed in between) is listed once. "
        "Exit 0.",
    )
    listing.add_argument("--projection", metavar="NAME", help="only this projection's letters")
    listing.add_argument(
        "--all",
        action="store_true",
        help="include resolved letters (replayed or purged), with who resolved them, when, how",
    )
    add_json_flag(listing)
    listing.set_defaults(handler=_list)

    show = actions.add_parser(
        "show",
        help="one dead letter in full: error, traceback, the event it carries",
        description="Show everything about one dead letter: its coordinates, the error with "
        "its traceback, its resolution if any, and the payload decoded (the event, or the raw "
        "text when it does not decode). Exit 4 if no letter has that id, 2 if a prefix is "
        "ambiguous.",
    )
    show.add_argument("id", help="the letter's id, or a unique prefix of it")
    add_json_flag(show)
    show.set_defaults(handler=_show)

    replay = actions.add_parser(
        "replay",
        help="project dead letters again, once the cause is fixed (each exactly once)",
        description="Decode each letter's event again and project it into the projection "
        "version it failed in, in one transaction with recording it as replayed: a letter is "
        "projected once however often replay runs (resolved letters are skipped). A letter "
        "that still fails is rolled back, reported, and stays pending. Exit 0 when every "
        "letter is replayed or was already resolved; 5 if any still fails; 4 if a letter, "
        "or the version it failed in, does not exist (see --to-live); 2 on bad arguments.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="letters (ids or unique prefixes)")
    replay.add_argument("--all", action="store_true", help="every pending letter")
    replay.add_argument(
        "--projection", metavar="NAME", help="with --all: only this projection's letters"
    )
    replay.add_argument(
        "--to-live",
        action="store_true",
        help="a letter whose version has been dropped goes to the projection's live version "
        "instead of being refused",
    )
    add_json_flag(replay)
    replay.set_defaults(handler=_replay)

    purge = actions.add_parser(
        "purge",
        help="record that dead letters are not to be projected (they stay on the topic)",
        description="Mark letters as purged, with an optional reason and the operating-system "
        "user: they leave the pending list but stay on the DLQ topic and in `list --all`. "
        "Letters already replayed or purged keep their resolution. Purging every pending "
        "letter needs --all --yes. Exit 0; 4 if a letter does not exist; 2 on bad arguments.",
    )
    purge.add_argument("ids", nargs="*", metavar="ID", help="letters (ids or unique prefixes)")
    purge.add_argument("--all", action="store_true", help="every pending letter (needs --yes)")
    purge.add_argument("--yes", action="store_true", help="confirm --all")
    purge.add_argument(
        "--projection", metavar="NAME", help="with --all: only this projection's letters"
    )
    purge.add_argument("--reason", metavar="TEXT", help="why (kept with the resolution)")
    add_json_flag(purge)
    purge.set_defaults(handler=_purge)


# -- handlers ---------------------------------------------------------------------------

Work = Callable[[Settings, AsyncConnection[Any]], Awaitable[int]]


def _list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(settings: Settings, conn: AsyncConnection[Any]) -> int:
        letters = await letters_store.scan(settings, conn)
        _warn_unreadable(letters)
        selected = letters.select(projection=args.projection, include_resolved=args.all)
        _render_letters(args, [letter.summary() for letter in selected])
        return EXIT_OK

    return _with_letters(settings, work)


def _show(settings: Settings, args: argparse.Namespace) -> int:
    async def work(settings: Settings, conn: AsyncConnection[Any]) -> int:
        letters = await letters_store.scan(settings, conn)
        details = _find(letters, args.id).details()
        if args.json:
            print_json(details)
        else:
            _print_details(details)
        return EXIT_OK

    return _with_letters(settings, work)


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    _check_selection(args, "replay")

    async def work(settings: Settings, conn: AsyncConnection[Any]) -> int:
        letters = await letters_store.scan(settings, conn)
        _warn_unreadable(letters)
        # In log order per partition: two letters of one conversation land as they were.
        chosen = sorted(
            _select(letters, args),
            key=lambda x: (x.projection, x.version, x.topic, x.partition, x.offset),
        )
        outcomes: list[Outcome] = []
        if chosen:
            replayer = letters_store.Replayer(
                settings,
                conn,
                lambda name, config: build(name, settings, config),
                to_live=args.to_live,
                resolved_by=_operator(),
            )
            async with replayer:
                with progress(disable=len(chosen) < _PROGRESS_FROM) as bar:
                    task = bar.add_task("replaying", total=len(chosen))
                    for letter in chosen:
                        outcomes.append(await replayer.replay(letter))
                        bar.advance(task)
        _report(args, outcomes, "no pending dead letters to replay")
        statuses = {outcome.status for outcome in outcomes}
        if letters_store.FAILED in statuses:
            return EXIT_INCOMPLETE
        if letters_store.VERSION_MISSING in statuses:
            return EXIT_NOT_FOUND
        return EXIT_OK

    return _with_letters(settings, work)


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    _check_selection(args, "purge")
    if args.all and not args.yes:
        raise CommandError("refusing to purge every pending dead letter without --yes", EXIT_USAGE)

    async def work(settings: Settings, conn: AsyncConnection[Any]) -> int:
        letters = await letters_store.scan(settings, conn)
        _warn_unreadable(letters)
        chosen = _select(letters, args)
        outcomes = await letters_store.purge(
            conn, chosen, reason=args.reason, resolved_by=_operator()
        )
        _report(args, outcomes, "no pending dead letters to purge")
        return EXIT_OK

    return _with_letters(settings, work)


# -- helpers ----------------------------------------------------------------------------


def _with_letters(settings: Settings, work: Work) -> int:
    """Run `work` with the broker (the letters) and the database (their resolutions)."""
    settings = require_endpoints(settings)

    async def run(conn: AsyncConnection[Any]) -> int:
        try:
            return await work(settings, conn)
        except psycopg.OperationalError as exc:
            # The connection went away mid-command: infrastructure, not the letters.
            raise DatabaseUnavailable(settings.require_database(), str(exc).strip()) from exc

    return with_database(run, settings)


def _check_selection(args: argparse.Namespace, verb: str) -> None:
    """Refuse contradictory or missing selections before touching any infrastructure."""
    if args.ids and args.all:
        raise CommandError(f"{verb}: name letters or use --all, not both", EXIT_USAGE)
    if args.projection and not args.all:
        raise CommandError(f"{verb}: --projection narrows --all; add --all", EXIT_USAGE)
    if not args.ids and not args.all:
        raise CommandError(f"{verb}: name the letters (ids) or use --all", EXIT_USAGE)


def _select(letters: DeadLetters, args: argparse.Namespace) -> list[StoredLetter]:
    """The letters `args` names (each once), or with --all the pending ones."""
    if args.all:
        return letters.select(projection=args.projection)
    chosen: dict[str, StoredLetter] = {}
    missing: list[str] = []
    for ref in args.ids:
        try:
            letter = _find(letters, ref)
        except CommandError as exc:
            if exc.code != EXIT_NOT_FOUND:
                raise
            missing.append(ref)
            continue
        chosen.setdefault(letter.id, letter)
    if missing:
        # Nothing done: a script that named a wrong id should not half-succeed.
        raise CommandError(f"no dead letter {', '.join(missing)}; nothing done", EXIT_NOT_FOUND)
    return list(chosen.values())


def _find(letters: DeadLetters, ref: str) -> StoredLetter:
    try:
        return letters.find(ref)
    except letters_store.UnknownDeadLetter as exc:
        raise CommandError(str(exc), EXIT_NOT_FOUND) from exc
    except letters_store.AmbiguousDeadLetter as exc:
        raise CommandError(f"{exc}; give more of the id", EXIT_USAGE) from exc


def _operator() -> str:
    """Who resolves a letter, for the audit trail: OS user at host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _warn_unreadable(letters: DeadLetters) -> None:
    if letters.unreadable:
        first = letters.unreadable[0]
        err_console().print(
            Text(
                f"warning: {len(letters.unreadable)} record(s) on the DLQ topic are not dead "
                f"letters (first: partition {first.partition} offset {first.offset}: "
                f"{first.reason})"
            )
        )


def _render_letters(args: argparse.Namespace, summaries: list[dict[str, Any]]) -> None:
    if args.json:
        print_json(summaries)
    elif not summaries:
        console().print("no dead letters" if args.all else "no pending dead letters")
    else:
        _print_letters(summaries, with_status=args.all)


def _print_letters(summaries: list[dict[str, Any]], *, with_status: bool) -> None:
    """Two lines a letter (where and what; then why), readable in a narrow terminal and
    in a pipe alike."""
    out = console()
    for s in summaries:
        status = f"  [{_status_text(s)}]" if with_status else ""
        out.print(
            Text(
                f"{s['id'][:8]}  {s['projection']} v{s['version']}  {_position(s)}  "
                f"{s['event_type'] or '(does not decode)'}  {s['stage']}  "
                f"{s['failed_at'][:19].replace('T', ' ')}  {s['attempts']} attempt(s){status}"
            )
        )
        error = s["error"]
        why = _shorten(f"{error.get('type')}: {error.get('message')}", 200)
        out.print(Text(f"          {why}"))
    pending = sum(1 for s in summaries if s["status"] == letters_store.PENDING)
    out.print(f"{len(summaries)} dead letter(s), {pending} pending")


def _print_details(details: dict[str, Any]) -> None:
    out = console()
    error = details["error"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("id", details["id"]),
        ("status", _status_text(details)),
        ("projection", f"{details['projection']} v{details['version']}"),
        ("position", f"{_position(details)}  key {details['key']}"),
        (
            "event",
            f"{details['event_type']} {details['event_id']}"
            if details["decodes"]
            else "does not decode",
        ),
        ("stage", details["stage"]),
        ("error", f"{error.get('type')} ({error.get('code')}): {error.get('message')}"),
        ("failed at", f"{details['failed_at']} after {details['attempts']} attempt(s)"),
        ("copies", f"{details['copies']} on the DLQ topic"),
        (
            "dlq record",
            f"partition {details['dlq']['partition']} offset {details['dlq']['offset']}",
        ),
    ]
    if not details["decodes"]:
        decode_error = details["decode_error"]
        rows.append(("decodes now", f"no: {decode_error['type']}: {decode_error['message']}"))
    for name, value in rows:
        grid.add_row(Text(name), Text(str(value)))
    out.print(grid)
    out.print(Text("\ntraceback:", style="bold"))
    out.print(Text(str(error.get("traceback") or "(none)").rstrip()))
    out.print(Text("\npayload:", style="bold"))
    payload = details["payload"]
    out.print(Text(payload if isinstance(payload, str) else json.dumps(payload, indent=2)))


def _report(args: argparse.Namespace, outcomes: list[Outcome], nothing: str) -> None:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    if args.json:
        print_json({"counts": counts, "letters": [o.document() for o in outcomes]})
        return
    out = console()
    if not outcomes:
        out.print(nothing)
        return
    # Every letter when few; when many, only those that need attention.
    quiet = len(outcomes) > 20
    for outcome in outcomes:
        if quiet and outcome.status in (letters_store.REPLAYED, letters_store.PURGED):
            continue
        out.print(Text(_outcome_line(outcome)))
    out.print(", ".join(f"{n} {_STATUS_WORDS[status]}" for status, n in sorted(counts.items())))


_STATUS_WORDS = {
    letters_store.REPLAYED: "replayed",
    letters_store.PURGED: "purged",
    letters_store.ALREADY_RESOLVED: "already resolved",
    letters_store.FAILED: "still failing (stay pending)",
    letters_store.VERSION_MISSING: "without their version",
}


def _outcome_line(outcome: Outcome) -> str:
    letter = outcome.letter
    where = f"{letter.id[:8]}  {letter.projection} v{letter.version}"
    if outcome.status == letters_store.REPLAYED:
        into = "" if outcome.into_version == letter.version else f" -> v{outcome.into_version}"
        return f"replayed          {where}{into}"
    if outcome.status == letters_store.PURGED:
        return f"purged            {where}"
    if outcome.status == letters_store.ALREADY_RESOLVED:
        earlier = outcome.resolution
        how = f"{earlier.resolution} {earlier.resolved_at:%Y-%m-%d %H:%M}" if earlier else "?"
        return f"already resolved  {where} ({how})"
    if outcome.status == letters_store.FAILED:
        return f"still fails       {where}: {outcome.error}"
    return f"version missing   {where}: {outcome.error}"


def _status_text(summary: dict[str, Any]) -> str:
    resolution = summary.get("resolution")
    if not resolution:
        return str(summary["status"])
    text = f"{resolution['resolution']} {resolution['resolved_at'][:19].replace('T', ' ')}"
    if resolution.get("into_version") not in (None, summary["version"]):
        text += f" into v{resolution['into_version']}"
    if resolution.get("reason"):
        text += f" ({resolution['reason']})"
    return text


def _position(summary: dict[str, Any]) -> str:
    return f"{summary['topic'].rsplit('.', 1)[-1]}[{summary['partition']}]@{summary['offset']}"


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
