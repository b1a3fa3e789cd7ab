"""``memstream log tail|dump|import``: the log's events, decoded and filtered; bulk import.

``tail`` follows new events (or replays from a point and goes on following), ``dump``
writes every matching event up to the end of the log as of the call and exits; both read
outside any consumer group (``streams.reader``), so they never disturb the projections.
Filters: logical topic, tenant, subject, type prefix, and the time the record was
appended to the log (its Kafka timestamp, which is also what ``--since`` seeks by).
``import`` appends historical conversations (platform exports, or a dump's JSON lines)
exactly once (``services.imports``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import orjson
from rich.progress import (
    TaskID,
)
from rich.table import Table
from rich.text import Text

from infra import local
from infra.migrate import migrate
from schemas import EventDecodeError, decode_event, encode_event, subject_sealing_codec, utc_now
from services import imports, tenants
from services.cli.common import (
    EXIT_INCOMPLETE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Commands,
    add_json_flag,
    connect,
    require_database,
    require_endpoints,
)
from services.cli.render import console, emit, err_console, progress
from services.settings import Settings
from streams import EventLog
from streams.reader import LogReader, Start
from streams.topics import Topics, ensure_topics

#: How much of an event's data a human line shows.
_EXCERPT_CHARS = 100
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def register(commands: Commands) -> None:
    """Add ``memstream log tail|dump|import`` to the `memstream` parser."""
    log = commands.add_parser(
        "log",
        help="the event log: follow it, dump it, import history into it",
        description="Read the event log outside any consumer group (the projections are not "
        "disturbed), or bulk-load historical conversations into it.",
    )
    actions = log.add_subparsers(dest="log_command", required=True, metavar="ACTION")

    tail = actions.add_parser(
        "tail",
        help="follow new events as they are appended (Ctrl-C to stop)",
        description="Print events as they are appended, decoded, one line each (or one JSON "
        "object a line with --json). Starts at the end of the log unless --from-beginning "
        "or --since; stops after --limit matching events, or on Ctrl-C (exit 0).",
        epilog="Example: memstream log tail --tenant acme --type memory. --limit 10",
    )
    tail_start = tail.add_mutually_exclusive_group()
    tail_start.add_argument(
        "--from-beginning", action="store_true", help="replay the whole log first, then follow"
    )
    _add_filters(tail, tail_start)
    tail.set_defaults(handler=_tail)

    dump = actions.add_parser(
        "dump",
        help="print every matching event up to the current end of the log, then exit",
        description="Print every matching event from the start of the log (or --since) up to "
        "its end as of the call, in time order across partitions. With --json each line is "
        "the event envelope (wire form, upcast to the latest version) plus its coordinates "
        'under "log": `memstream log import` reads it back.',
        epilog="Example: memstream log dump --tenant acme --since 2026-03-01 --json -o acme.jsonl",
    )
    _add_filters(dump, dump)
    dump.add_argument(
        "-o", "--output", metavar="FILE", help="write the events to FILE instead of stdout"
    )
    dump.set_defaults(handler=_dump)

    load = actions.add_parser(
        "import",
        help="bulk-load historical conversations (JSON lines), each event appended once",
        description="Append the events of FILE (one JSON object a line; '-' reads stdin): "
        "platform payloads as their webhooks deliver them (ElevenLabs post-call or a "
        "conversation from its API, Vapi server messages, Retell webhooks) or memstream "
        "events as `log dump --json` writes them. Importing the same file twice appends "
        "nothing the second time: event ids come from the platforms' keys, and a ledger in "
        "PostgreSQL holds the ids already in the log. A bad line is reported with its "
        "number and skipped; the rest is imported.",
        epilog="Exit codes: 0 all lines imported (or already there); 5 some lines rejected; "
        "2 FILE unreadable or bad arguments; 3 broker or database unreachable; 4 no such "
        "tenant.",
    )
    load.add_argument("file", metavar="FILE", help="JSON lines to import ('-' for stdin)")
    load.add_argument(
        "--tenant",
        help="the tenant the conversations belong to (required for platform payloads; for "
        "memstream events, only events of this tenant are accepted)",
    )
    load.add_argument(
        "--platform",
        choices=imports.FORMATS,
        default="auto",
        help="the lines' format (default auto: recognised line by line)",
    )
    load.add_argument(
        "--dry-run",
        action="store_true",
        help="parse and count what would be imported; append nothing (the ledger still "
        "learns which events the log holds)",
    )
    add_json_flag(load)
    load.set_defaults(handler=_import)


def _add_filters(parser: argparse.ArgumentParser, start: Any) -> None:
    """The filters of tail and dump (`start`: where --since goes, exclusive for tail)."""
    start.add_argument(
        "--since",
        type=parse_time,
        metavar="TIME",
        help="events appended at or after TIME: ISO 8601 (UTC unless it has an offset) or "
        "a duration ago such as 30m, 2h, 7d",
    )
    parser.add_argument(
        "--until", type=parse_time, metavar="TIME", help="events appended before TIME"
    )
    parser.add_argument(
        "--topic",
        action="append",
        choices=imports.EVENT_TOPICS,
        help="a logical topic (repeatable; default: all of them)",
    )
    parser.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    parser.add_argument(
        "--subject", action="append", help="only this subject, tenant/user (repeatable)"
    )
    parser.add_argument(
        "--type",
        action="append",
        dest="types",
        metavar="TYPE",
        help="event types starting with TYPE, e.g. memory. or conversation.ended (repeatable)",
    )
    parser.add_argument("--limit", type=_positive, metavar="N", help="stop after N matching events")
    parser.add_argument(
        "--json", action="store_true", help='one JSON object a line: the event plus "log"'
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_time(text: str) -> datetime:
    """ISO 8601 (naive means UTC) or a duration ago (``30s``, ``15m``, ``2h``, ``7d``, ``1w``)."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = relative.groups()
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: float(amount)})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 like 2026-03-02T09:30:00Z, or 30m, 2h, 7d)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# -- tail and dump ------------------------------------------------------------------------


class EventFilter:
    """Which records `tail` and `dump` show; cheap checks on key and headers come first."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.tenants = set(args.tenant or ())
        self.subjects = set(args.subject or ())
        # Their record keys: each subject's pseudonym (and the subject itself, the key of
        # records from before encryption).
        sealing = subject_sealing_codec()
        self.subject_keys = self.subjects | (
            {sealing.pseudonym(s) for s in self.subjects} if sealing is not None else set()
        )
        self.types = tuple(args.types or ())
        self.since_ms = _millis(args.since) if args.since else None
        self.until_ms = _millis(args.until) if args.until else None

    def by_time(self, timestamp_ms: int) -> bool:
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms < self.until_ms

    def by_identity(self, subject: str | None, event_type: str | None) -> bool:
        """Whether a record with this subject and type can match (None: not known)."""
        if self.subjects and subject is not None and subject not in self.subjects:
            return False
        return self.by_key(subject, event_type)

    def by_key(self, key: str | None, event_type: str | None) -> bool:
        """Whether a record with this key (``tenant/...``: the subject's pseudonym, or the
        subject itself in records from before encryption) and type can match."""
        if self.subjects and key is not None and key not in self.subject_keys:
            return False
        if self.tenants and key is not None and key.split("/", 1)[0] not in self.tenants:
            return False
        return not (self.types and event_type is not None and not event_type.startswith(self.types))

    @property
    def by_content(self) -> bool:
        """Whether a filter needs the event's content (a record that is no event fails it)."""
        return bool(self.tenants or self.subjects or self.types)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _require_kafka(settings: Settings) -> Settings:
    """The configured broker, or the local one if it is running; and the database, whose
    subject keys open the events' personal data (require_database installs the codec)."""
    if settings.kafka_bootstrap is None:
        status = local.status(settings)["kafka"]
        if status.get("running"):
            settings = settings.replace(kafka_bootstrap=status["endpoint"])
    settings.require_kafka()
    return require_database(settings)


def _tail(settings: Settings, args: argparse.Namespace) -> int:
    start: Start = args.since or ("earliest" if args.from_beginning else "latest")
    try:
        return asyncio.run(_show(_require_kafka(settings), args, start, follow=True))
    except KeyboardInterrupt:
        return EXIT_OK  # stopping a tail is how a tail ends


def _dump(settings: Settings, args: argparse.Namespace) -> int:
    settings = _require_kafka(settings)
    if args.output is None:
        return asyncio.run(_show(settings, args, args.since or "earliest", follow=False))
    try:
        out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror}", EXIT_USAGE) from None
    with out:
        return asyncio.run(_show(settings, args, args.since or "earliest", follow=False, out=out))


async def _show(
    settings: Settings,
    args: argparse.Namespace,
    start: Start,
    *,
    follow: bool,
    out: IO[str] | None = None,
) -> int:
    """Read, filter and print records (tail: forever or --limit; dump: up to the end)."""
    topics = Topics(settings.topic_prefix)
    names = [topics.name(logical) for logical in (args.topic or imports.EVENT_TOPICS)]
    event_filter = EventFilter(args)
    stream = out if out is not None else sys.stdout
    shown = undecodable = 0
    async with LogReader(settings, names, start=start, follow=follow) as reader:
        if follow and not reader.ends:
            raise CommandError(
                f"no topics under prefix {settings.topic_prefix!r} yet: nothing to follow "
                "(`memstream run` creates them)",
                EXIT_NOT_FOUND,
            )
        errors = err_console()
        with progress(transient=True, disable=follow) as bar:
            task = bar.add_task("dump", total=reader.total)
            read = 0
            try:
                async for record in reader:
                    read += 1
                    if read % 1000 == 0:
                        bar.update(task, completed=read)
                    rendered = _render(record, topics, event_filter, as_json=args.json)
                    if rendered is None:
                        continue
                    line, decoded = rendered
                    undecodable += not decoded
                    stream.write(line + "\n")
                    if follow:
                        stream.flush()  # a tail is read as it goes, often through a pipe
                    shown += 1
                    if args.limit is not None and shown >= args.limit:
                        break
            except BrokenPipeError:
                _silence_stdout()
                return EXIT_OK  # the reader of a pipe (e.g. `head`) has had enough
    if not follow and (out is not None or errors.is_terminal):
        where = f" to {args.output}" if out is not None else ""
        errors.print(
            f"{shown} events{where}" + (f" ({undecodable} undecodable)" if undecodable else "")
        )
    return EXIT_OK


def _silence_stdout() -> None:
    # Python flushes stdout at exit; with the pipe's reader gone that would print a
    # BrokenPipeError traceback.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _render(
    record: Any, topics: Topics, event_filter: EventFilter, *, as_json: bool
) -> tuple[str, bool] | None:
    """(output line, whether it is an event) of a record; None if the filters exclude it."""
    if not event_filter.by_time(record.timestamp):
        return None
    key = record.key.decode("utf-8", "replace") if record.key else None
    header = dict(record.headers or ()).get("type")
    header_type = header.decode("utf-8", "replace") if header else None
    if not event_filter.by_key(key, header_type):
        return None
    coordinates = {
        "topic": topics.logical(record.topic),
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": _time(record.timestamp),
    }
    try:
        event = decode_event(record.value or b"")
    except EventDecodeError as exc:
        # A record that is no event can match only filters its key and headers answer.
        if (event_filter.types and header_type is None) or (
            (event_filter.tenants or event_filter.subjects) and key is None
        ):
            return None
        return _undecodable(record, coordinates, key, exc.message, as_json=as_json), False
    if not event_filter.by_identity(event.subject, event.type):
        return None
    if as_json:
        # The wire form round-trips through `log import` (personal text stays encoded).
        wire = encode_event(event)
        return (wire[:-1] + b',"log":' + orjson.dumps(coordinates) + b"}").decode(), True
    data = orjson.dumps(event.data.model_dump(mode="json")).decode()
    if len(data) > _EXCERPT_CHARS:
        data = data[: _EXCERPT_CHARS - 1] + "…"
    return (
        f"{coordinates['timestamp']} {coordinates['topic']}@{record.partition}:{record.offset}"
        f" {event.type} {event.subject} {event.id} {data}"
    ), True


def _undecodable(
    record: Any, coordinates: dict[str, Any], key: str | None, reason: str, *, as_json: bool
) -> str:
    if as_json:
        value = (record.value or b"").decode("utf-8", "replace")
        return orjson.dumps(
            {"log": coordinates, "undecodable": reason, "key": key, "value": value}
        ).decode()
    return (
        f"{coordinates['timestamp']} {coordinates['topic']}@{record.partition}:{record.offset}"
        f" <undecodable: {reason}> key={key}"
    )


def _time(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- import -------------------------------------------------------------------------------


def _import(settings: Settings, args: argparse.Namespace) -> int:
    if args.platform in imports.PLATFORMS and args.tenant is None:
        raise CommandError(f"--platform {args.platform} needs --tenant", EXIT_USAGE)
    # The file first: a missing file is a usage error whether or not the log answers.
    source = _open_input(args.file)
    with source:
        settings = require_endpoints(settings)
        migrate(settings.require_database())
        summary = asyncio.run(_import_file(settings, args, source))
    if args.json:
        emit(args, summary.as_dict(), "")
    else:
        console().print(_summary_table(summary))
    return EXIT_INCOMPLETE if summary.rejected else EXIT_OK


def _open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None


async def _import_file(
    settings: Settings, args: argparse.Namespace, source: IO[bytes]
) -> imports.ImportSummary:
    errors = err_console()
    async with await connect(settings) as conn:
        region: str | None = None
        legacy_ids_before: datetime | None = None
        if args.tenant is not None:
            found = await tenants.get_tenant(conn, args.tenant)
            if found is None:
                raise CommandError(
                    f"no tenant {args.tenant!r} (create it: memstream tenants create "
                    f"{args.tenant})",
                    EXIT_NOT_FOUND,
                )
            region = found.default_region
            legacy_ids_before = found.legacy_ids_before
        await imports.lock(
            conn, lambda: errors.print("waiting for another `memstream log import` to finish")
        )
        if not args.dry_run:
            await ensure_topics(settings)
        with progress(transient=True) as bar:
            scans: dict[str, TaskID] = {}

            def scanning(topic: str, done: int, total: int) -> None:
                # The ledger learns the ids a topic got since the last import, by any writer.
                if topic not in scans:
                    scans[topic] = bar.add_task(f"checking the log ({topic})", total=total)
                bar.update(scans[topic], completed=done, visible=done < total)

            log = None if args.dry_run else EventLog(settings)
            if log is not None:
                await log.start()
            try:
                importer = imports.Importer(
                    conn,
                    log,
                    settings,
                    platform=args.platform,
                    tenant=args.tenant,
                    default_region=region,
                    received_at=utc_now(),
                    legacy_ids_before=legacy_ids_before,
                    on_rejected=lambda r: bar.console.print(
                        Text(f"line {r.line}: {r.code}: {r.reason}", style="red")
                    ),
                    on_ledger_scan=scanning,
                )
                size = _size(source)
                task = bar.add_task("importing", total=size)
                done = 0
                for number, line in enumerate(source, start=1):
                    await importer.add(number, line)
                    done += len(line)
                    if number % 200 == 0:
                        bar.update(task, completed=done)
                await importer.flush()
                bar.update(task, completed=done)
            finally:
                if log is not None:
                    await log.stop()
    return importer.summary


def _size(source: IO[bytes]) -> int | None:
    try:
        return os.fstat(source.fileno()).st_size if source.seekable() else None
    except (OSError, ValueError):
        return None


def _summary_table(summary: imports.ImportSummary) -> Table:
    title = "import (dry run: nothing appended)" if summary.dry_run else "import"
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("lines", justify="right")
    table.add_row("lines read", str(summary.lines))
    table.add_row("imported" if not summary.dry_run else "would import", str(summary.imported))
    table.add_row("already imported", str(summary.already))
    if summary.empty:
        table.add_row("no events (e.g. audio webhooks)", str(summary.empty))
    if summary.erased:
        table.add_row("of forgotten users, from before their erasure", str(summary.erased))
    table.add_row("rejected", str(summary.rejected))
    table.add_row(
        "events appended" if not summary.dry_run else "events to append", str(summary.events)
    )
    return table
