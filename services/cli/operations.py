"""`memstream projections` and `memstream reprocess`: running, inspecting, rebuilding and
switching projection versions.

A rebuild builds version N+1 of a read model beside the live version N, which keeps
serving; once N+1 has caught up with the log, ``--swap`` switches the read views in one
transaction (streams.versions) and every `memstream run` / `projections run` worker moves
to N+1 within seconds (projections.lifecycle.LiveProjection). ``reprocess`` does the same
for a processor run differently (another extractor, another embedding model), together
with a new version of everything that reads its output (streams.lineage), so the old and
the new results can be compared side by side before the switch.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client import start_http_server
from psycopg import AsyncConnection, sql
from rich.progress import (
    TaskID,
)
from rich.table import Table

from infra.migrate import migrate
from projections import PROJECTIONS, build
from projections.embeddings.models import MODEL_NAME
from projections.lifecycle import (
    Build,
    LiveProjection,
    downstream,
    new_version_config,
    run_to_log_end,
)
from services.cli.common import (
    EXIT_INCOMPLETE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    CommandError,
    Commands,
    add_json_flag,
    connect,
    require_endpoints,
)
from services.cli.render import console, emit, err_console, progress
from services.cli.serve import serve
from services.live.status import live_status
from services.settings import Settings
from streams import checkpoints, versions
from streams.projection import version_schema
from streams.runtime import ProjectionRunner

#: Processors: their output is events, so they are rebuilt with `reprocess`.
PROCESSORS = sorted(name for name, cls in PROJECTIONS.items() if cls.produces)
READ_MODELS = sorted(name for name in PROJECTIONS if name not in PROCESSORS)


def register(commands: Commands) -> None:
    """Add `projections` and `reprocess` to the `memstream` parser."""
    projections = commands.add_parser(
        "projections",
        help="run, inspect, rebuild and switch projection versions",
        description="Every read model and processor runs as numbered versions, each in its "
        "own schema (<name>_v<N>) and consumer group; one version of each is live (what "
        "the <name>.* views and the query service read).",
    )
    actions = projections.add_subparsers(
        dest="projections_command", required=True, metavar="ACTION"
    )

    status = actions.add_parser(
        "status",
        help="versions, checkpoints and lag per partition, events/s, last error",
        description="For each projection (or the one named): its versions and their state "
        "(live, building, retired), the checkpoint and lag per partition of the log, events "
        "projected per second (measured over --interval), and the last error a runner hit.",
    )
    status.add_argument("name", nargs="?", choices=sorted(PROJECTIONS), help="one projection")
    status.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds to measure events/s over (0: skip the measurement; default 1)",
    )
    add_json_flag(status)
    status.set_defaults(handler=_status)

    run_one = actions.add_parser(
        "run",
        help="run one projection as a worker of its consumer group (start several to scale)",
        description="Without --version: run the live version and follow switches to a new "
        "one (what `memstream run` does for every projection). With --version: run exactly "
        "that version (registering it as building if it is new).",
    )
    run_one.add_argument("name", choices=sorted(PROJECTIONS), help="projection name")
    run_one.add_argument("--version", type=int, default=None, help="a fixed version to run")
    run_one.add_argument(
        "--since",
        type=_time,
        default=None,
        help="for a new --version: start from this ISO-8601 time, not the earliest offset",
    )
    run_one.set_defaults(handler=_projection_run)

    rebuild = actions.add_parser(
        "rebuild",
        help="build the next version of a read model beside the live one; --swap when done",
        description="Build version N+1 of a read model from the log while version N keeps "
        "serving, with a progress bar; resumes a version still building from an earlier, "
        "interrupted rebuild. With --swap, switch the live version in one transaction once "
        "N+1 has caught up (running workers follow within seconds). Processors "
        f"({', '.join(PROCESSORS)}) are rebuilt with `memstream reprocess`.",
    )
    rebuild.add_argument("name", choices=sorted(PROJECTIONS), help="read model to rebuild")
    since = rebuild.add_mutually_exclusive_group()
    since.add_argument(
        "--from-beginning",
        action="store_true",
        help="build from the earliest offset of every partition (the default)",
    )
    since.add_argument(
        "--since",
        type=_time,
        default=None,
        help="build from the first event at or after this ISO-8601 time (e.g. a read model "
        "that only needs recent history)",
    )
    rebuild.add_argument(
        "--restart", action="store_true", help="drop a version still building and start anew"
    )
    _add_finish_flags(rebuild)
    rebuild.set_defaults(handler=_rebuild)

    swap = actions.add_parser(
        "swap",
        help="catch a version up with the log, then make it live (also: roll back)",
        description="Run VERSION until it has caught up, then switch the live version to it "
        "in one transaction. Swapping to a retired version rolls back to it (it catches up "
        "first).",
    )
    swap.add_argument("name", choices=sorted(PROJECTIONS))
    swap.add_argument("version", type=int)
    _add_finish_flags(swap, swap=False)
    swap.set_defaults(handler=_swap)

    drop = actions.add_parser(
        "drop",
        help="drop a version that is not live: its tables, registry row and checkpoints",
    )
    drop.add_argument("name", choices=sorted(PROJECTIONS))
    drop.add_argument("version", type=int)
    add_json_flag(drop)
    drop.set_defaults(handler=_drop)

    reprocess = commands.add_parser(
        "reprocess",
        help="run a processor differently over history, as new versions beside the live ones",
        description="Run a processor with another extractor or embedding model over the "
        "whole log as a new version, together with a new version of every read model and "
        "processor that reads its output. The live versions keep serving; compare, then "
        "switch everything at once with --swap (or later with `projections swap`).",
    )
    what = reprocess.add_subparsers(dest="processor", required=True, metavar="PROCESSOR")
    extraction = what.add_parser(
        "extraction",
        help="extract memories again with another extractor",
        description="e.g. `memstream reprocess extraction --extractor llm:gpt-4o-mini` after "
        "months of rules. Builds new versions of extraction, memories, embedder, "
        "embeddings, summarizer and summaries.",
    )
    extraction.add_argument(
        "--extractor",
        required=True,
        help="`rules`, `llm` (MEMSTREAM_LLM_MODEL) or `llm:MODEL` (any model the "
        "OpenAI-compatible endpoint serves)",
    )
    _add_finish_flags(extraction)
    extraction.set_defaults(handler=_reprocess, target="extraction")
    embeddings = what.add_parser(
        "embeddings",
        help="embed every memory again with another model",
        description="e.g. `memstream reprocess embeddings --model text-embedding-3-small`. "
        "Builds new versions of embedder and embeddings; the query service embeds questions "
        "with the model of the live embedder version.",
    )
    embeddings.add_argument(
        "--model",
        required=True,
        help="`local` (the default bundled model, all-MiniLM-L6-v2 dq8), a bundled model's"
        " name (local/all-minilm-l6-v2-dq8, local/all-minilm-l6-v2-int8), or a model of the"
        " OpenAI-compatible endpoint",
    )
    _add_finish_flags(embeddings)
    embeddings.set_defaults(handler=_reprocess, target="embedder")


def _add_finish_flags(parser: argparse.ArgumentParser, *, swap: bool = True) -> None:
    if swap:
        parser.add_argument(
            "--swap", action="store_true", help="make the new version(s) live once caught up"
        )
    parser.add_argument(
        "--drop-old",
        action="store_true",
        help="after a switch, drop the retired versions (their tables and checkpoints)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus /metrics on this port while working (progress, lag; 0: off)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give up after this many seconds (exit 5; running the command again resumes)",
    )
    add_json_flag(parser)


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {value}Z or {value}+00:00")
    return parsed


# -- handlers --------------------------------------------------------------------------


def _status(settings: Settings, args: argparse.Namespace) -> int:
    settings = require_endpoints(settings)
    migrate(settings.require_database())

    live: dict[str, Any] = {}  # the live processor's, when every projection is shown

    async def work() -> list[dict[str, Any]]:
        async with await connect(settings) as conn:
            infos = await versions.registry(conn, args.name)
            report: list[dict[str, Any]] = []
            before: dict[tuple[str, int], int] = {}
            for name in [args.name] if args.name else sorted(PROJECTIONS):
                entry: dict[str, Any] = {"name": name, "live_version": None, "versions": []}
                for info in (i for i in infos if i.projection == name):
                    where = await versions.positions(
                        settings, conn, PROJECTIONS[name], info.version
                    )
                    before[(name, info.version)] = sum(p.checkpoint or 0 for p in where)
                    if info.state == "live":
                        entry["live_version"] = info.version
                    entry["versions"].append(
                        {
                            "version": info.version,
                            "state": info.state,
                            "start_at": info.start_at,
                            "created_at": info.created_at,
                            "live_since": info.live_since,
                            "config": info.config,
                            "lag": sum(p.lag for p in where),
                            "events_per_s": None,
                            "last_error": info.last_error,
                            "last_error_at": info.last_error_at,
                            "partitions": [
                                {
                                    "topic": p.topic,
                                    "partition": p.partition,
                                    "log_start": p.log_start,
                                    "log_end": p.log_end,
                                    "checkpoint": p.checkpoint,
                                    "lag": p.lag,
                                }
                                for p in where
                            ],
                        }
                    )
                report.append(entry)
            if not args.name:
                live.update(await live_status(settings, conn))
            if args.interval > 0:
                began = time.monotonic()
                await asyncio.sleep(args.interval)
                for entry in report:
                    for v in entry["versions"]:
                        now = await checkpoints.read(conn, entry["name"], v["version"])
                        moved = sum(now.values()) - before[(entry["name"], v["version"])]
                        v["events_per_s"] = round(moved / (time.monotonic() - began), 1)
            return report

    report = asyncio.run(work())
    if args.json:
        emit(args, {"projections": report, **({"live_processor": live} if live else {})}, "")
        return EXIT_OK
    _print_status(report, live)
    return EXIT_OK


def _print_status(report: list[dict[str, Any]], live: dict[str, Any]) -> None:
    """One table a projection version (the live processor's first, when shown)."""
    out = console()
    if live:
        _print_live(out, live)
    for entry in report:
        table = Table(title=f"{entry['name']}", title_justify="left", expand=False)
        for column in ("version", "state", "lag", "events/s", "partitions (checkpoint/end)",
                       "last error"):  # fmt: skip
            table.add_column(column)
        for v in entry["versions"]:
            parts = ", ".join(
                f"{p['topic'].rsplit('.', 1)[-1]}[{p['partition']}] "
                f"{'-' if p['checkpoint'] is None else p['checkpoint']}/{p['log_end']}"
                for p in v["partitions"]
            )
            error = (
                f"{v['last_error_at']:%Y-%m-%d %H:%M:%S} {v['last_error']}"
                if v["last_error"]
                else ""
            )
            rate = "" if v["events_per_s"] is None else f"{v['events_per_s']:g}"
            table.add_row(f"v{v['version']}", v["state"], str(v["lag"]), rate, parts, error[:120])
        if not entry["versions"]:
            table.add_row("-", "never run", "", "", "", "")
        out.print(table)


def _print_live(out: Any, live: dict[str, Any]) -> None:
    table = Table(title="live processor", title_justify="left", expand=False)
    for column in ("group", "lag", "partitions (committed/end)", "calls", "prefetches"):
        table.add_column(column)
    parts = ", ".join(
        f"[{p['partition']}] {'-' if p['committed'] is None else p['committed']}/{p['log_end']}"
        for p in live["partitions"]
    )
    table.add_row(
        live["group"],
        str(live["lag"]),
        parts,
        str(live["calls_with_prefetches"]),
        str(live["prefetches"]),
    )
    out.print(table)


def _projection_run(settings: Settings, args: argparse.Namespace) -> int:
    settings = require_endpoints(settings)
    migrate(settings.require_database())
    if args.version is None:
        if args.since is not None:
            raise CommandError("--since applies to a new --version only")
        return asyncio.run(serve(settings, [LiveProjection(args.name, settings)], []))

    async def runner() -> ProjectionRunner:
        async with await connect(settings) as conn:
            config = await versions.config(conn, args.name, args.version)
            if not config:
                config = await new_version_config(conn, args.name)
        return ProjectionRunner(
            build(args.name, settings, config),
            settings,
            version=args.version,
            start_at=args.since,
            config=config,
        )

    async def run() -> int:
        return await serve(settings, [await runner()], [])

    return asyncio.run(run())


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    if args.name in PROCESSORS:
        raise CommandError(
            f"{args.name} is a processor: its output is events. Run it differently with "
            "`memstream reprocess` (which rebuilds what reads its output too)"
        )
    settings = require_endpoints(settings)
    migrate(settings.require_database())

    async def work() -> int:
        async with await connect(settings) as conn:
            building = [
                i for i in await versions.registry(conn, args.name) if i.state == "building"
            ]
            if building and args.restart:
                for info in building:
                    await versions.drop_version(conn, PROJECTIONS[args.name], info.version)
                building = []
            if building:
                info = building[-1]
                err_console().print(
                    f"resuming {args.name} v{info.version}, building since "
                    f"{info.created_at:%Y-%m-%d %H:%M} (--restart to start anew)"
                )
                plan = [Build(args.name, info.version, info.config, info.start_at)]
            else:
                settings_of_live = await _live_settings(conn, args.name)
                plan = [
                    Build(
                        args.name,
                        await versions.next_version(conn, args.name),
                        await new_version_config(conn, args.name, settings=settings_of_live),
                        args.since,
                    )
                ]
        return await _finish(settings, args, plan, swap=args.swap)

    return asyncio.run(work())


def _swap(settings: Settings, args: argparse.Namespace) -> int:
    settings = require_endpoints(settings)
    migrate(settings.require_database())

    async def work() -> int:
        async with await connect(settings) as conn:
            found = [
                i for i in await versions.registry(conn, args.name) if i.version == args.version
            ]
        if not found:
            raise CommandError(f"{args.name} v{args.version} is not registered", EXIT_NOT_FOUND)
        info = found[0]
        return await _finish(
            settings, args, [Build(args.name, info.version, info.config, info.start_at)], swap=True
        )

    return asyncio.run(work())


def _drop(settings: Settings, args: argparse.Namespace) -> int:
    settings = require_endpoints(settings)
    migrate(settings.require_database())

    async def work() -> int:
        async with await connect(settings) as conn:
            known = {i.version: i.state for i in await versions.registry(conn, args.name)}
            if args.version not in known:
                raise CommandError(f"{args.name} v{args.version} is not registered", EXIT_NOT_FOUND)
            if known[args.version] == "live":
                raise CommandError(
                    f"{args.name} v{args.version} is live: switch to another version first"
                )
            await versions.drop_version(conn, PROJECTIONS[args.name], args.version)
        emit(
            args,
            {"dropped": [{"projection": args.name, "version": args.version}]},
            f"dropped {args.name} v{args.version}",
        )
        return EXIT_OK

    return asyncio.run(work())


def _reprocess(settings: Settings, args: argparse.Namespace) -> int:
    target: str = args.target
    overrides = _processor_settings(settings, args)
    settings = require_endpoints(settings)
    migrate(settings.require_database())

    async def work() -> int:
        names = [target, *downstream(target)]
        async with await connect(settings) as conn:
            numbers = {name: await versions.next_version(conn, name) for name in names}
            # Everything in the plan reads the new versions of the processors in it.
            follows = {name: numbers[name] for name in names if name in PROCESSORS}
            plan: list[Build] = []
            for name in names:
                if name == target:
                    own: dict[str, Any] | None = overrides
                else:
                    own = await _live_settings(conn, name)
                config = await new_version_config(conn, name, settings=own, follows=follows)
                plan.append(Build(name, numbers[name], config))
        return await _finish(settings, args, plan, swap=args.swap, compare=True)

    return asyncio.run(work())


async def _live_settings(conn: AsyncConnection[Any], name: str) -> dict[str, Any] | None:
    """The settings the live version of `name` was recorded with (a new version keeps
    them: rebuilding a read model does not change how its processor ran)."""
    live = await versions.live_version(conn, name)
    if live is None:
        return None
    settings: dict[str, Any] | None = (await versions.config(conn, name, live)).get("settings")
    return settings


def _processor_settings(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """The settings a reprocessed processor's version is recorded with."""
    if args.target == "extraction":
        choice: str = args.extractor
        if choice == "rules":
            return {"llm_model": ""}
        if choice == "llm":
            if not settings.llm_model:
                raise CommandError("--extractor llm needs MEMSTREAM_LLM_MODEL; or give llm:MODEL")
            return {"llm_model": settings.llm_model}
        if choice.startswith("llm:") and choice[4:].strip():
            return {"llm_model": choice[4:].strip()}
        raise CommandError(f"--extractor must be rules, llm or llm:MODEL, not {choice!r}")
    model: str = args.model.strip()
    if not model:
        raise CommandError("--model must name a model, or `local`")
    # `local` is recorded as the model it is today: a later default does not change what
    # this version embeds with.
    return {"embedding_model": MODEL_NAME if model == "local" else model}


async def _finish(
    settings: Settings,
    args: argparse.Namespace,
    plan: Sequence[Build],
    *,
    swap: bool,
    compare: bool = False,
) -> int:
    """Catch the planned versions up (progress on stderr), then switch them live together
    (with `swap`) and drop what they retired (with --drop-old). Prints the outcome."""
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=settings.metrics_host)
    began = time.monotonic()
    with progress(disable=args.json, rate=True) as bar:
        bars: dict[tuple[str, int], TaskID] = {
            (b.name, b.version): bar.add_task(f"{b.name} v{b.version}", total=None, rate="")
            for b in plan
        }

        def show(builds: Sequence[Build]) -> None:
            elapsed = max(time.monotonic() - began, 1e-6)
            for b in builds:
                bar.update(
                    bars[(b.name, b.version)],
                    completed=b.done,
                    total=b.done + b.remaining,
                    rate=f"{b.done / elapsed:,.0f}",
                )

        caught_up = await run_to_log_end(settings, plan, timeout_s=args.timeout, on_progress=show)
    seconds = time.monotonic() - began
    result: dict[str, Any] = {
        "caught_up": caught_up,
        "switched": False,
        "dropped": [],
        "seconds": round(seconds, 2),
        "versions": [
            {
                "projection": b.name,
                "version": b.version,
                "events": b.done,
                "remaining": b.remaining,
                "events_per_s": round(b.done / seconds, 1) if seconds else None,
                "config": b.config,
            }
            for b in plan
        ],
    }
    if not caught_up:
        emit(
            args,
            result,
            f"not caught up after {seconds:.0f} s; run the command again to resume "
            "(the versions keep their progress)",
        )
        return EXIT_INCOMPLETE
    async with await connect(settings) as conn:
        if compare:
            result["compare"] = await _compare(conn, plan)
        if swap:
            async with conn.transaction():  # every version in the plan switches at once
                for b in plan:
                    await versions.switch_live(conn, PROJECTIONS[b.name], b.version)
            result["switched"] = True
            if args.drop_old:
                for b in plan:
                    for info in await versions.registry(conn, b.name):
                        if info.state == "retired":
                            await versions.drop_version(conn, PROJECTIONS[b.name], info.version)
                            result["dropped"].append(
                                {"projection": b.name, "version": info.version}
                            )
    emit(args, result, _finish_text(result, plan))
    return EXIT_OK


def _finish_text(result: dict[str, Any], plan: Sequence[Build]) -> str:
    """What `_finish` did, for a human: per version, the comparison, switch and drops."""
    lines = [
        f"{v['projection']} v{v['version']}: caught up, {v['events']:,} events "
        f"({v['events_per_s']:,.0f}/s)"
        for v in result["versions"]
    ]
    for row in result.get("compare", []):
        lines.append(
            f"  {row['projection']}.{row['table']}: live v{row['live_version']} "
            f"{row['live_rows']:,} rows, new v{row['version']} {row['rows']:,} rows"
        )
    if result["switched"]:
        lines.append("switched live: " + ", ".join(f"{b.name} v{b.version}" for b in plan))
    else:
        lines.append(
            "not switched; make them live with: "
            + "; ".join(f"memstream projections swap {b.name} {b.version}" for b in plan)
            + (" (or run again with --swap)" if len(plan) > 1 else "")
        )
    lines.extend(f"dropped {d['projection']} v{d['version']}" for d in result["dropped"])
    return "\n".join(lines)


async def _compare(conn: AsyncConnection[Any], plan: Sequence[Build]) -> list[dict[str, Any]]:
    """Rows per table of each new read-model version beside its live version."""
    rows: list[dict[str, Any]] = []
    for b in plan:
        if b.name in PROCESSORS:
            continue
        live = await versions.live_version(conn, b.name)
        if live is None or live == b.version:
            continue
        for table in PROJECTIONS[b.name].tables:
            counts = []
            for version in (live, b.version):
                cursor = await conn.execute(
                    sql.SQL("SELECT count(*) FROM {}.{}").format(
                        sql.Identifier(version_schema(b.name, version)), sql.Identifier(table)
                    )
                )
                row = await cursor.fetchone()
                counts.append(int(row[0]) if row else 0)
            rows.append(
                {
                    "projection": b.name,
                    "table": table,
                    "live_version": live,
                    "live_rows": counts[0],
                    "version": b.version,
                    "rows": counts[1],
                }
            )
    return rows
