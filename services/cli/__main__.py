"""The ``memstream`` command.

    memstream run                      infrastructure (unless configured) + every processor
    memstream infra up|down|status     the local Kafka and PostgreSQL
    memstream migrate                  apply the core SQL migrations
    memstream projections run NAME     one projection as a worker of its consumer group

Exit codes: 0 success; 1 unexpected failure; 2 bad usage or configuration;
3 infrastructure unreachable (broker or database); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client import start_http_server

from infra import local
from infra.kafka import KafkaLaunchError
from infra.migrate import migrate
from infra.postgres import PostgresLaunchError
from projections import PROJECTIONS
from streams import BrokerUnavailable, ConfigurationError, DatabaseUnavailable, Settings
from streams.runtime import ProjectionRunner, tune_gc_for_projecting
from streams.topics import ensure_topics

logger = logging.getLogger("memstream")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result: int = args.handler(settings, args)
        return result
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ConfigurationError as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BrokerUnavailable, DatabaseUnavailable, KafkaLaunchError, PostgresLaunchError) as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memstream",
        description="Event-sourced memory for voice agents: the log, its projections, its tools.",
        epilog="Configuration comes from MEMSTREAM_* environment variables (see README.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="start everything locally: infrastructure (unless configured) and every processor",
        description="Start Kafka and PostgreSQL unless MEMSTREAM_KAFKA_BOOTSTRAP / "
        "MEMSTREAM_DATABASE_URL are set, apply migrations, create topics, and run every "
        "projection until Ctrl-C. Stops on exit only the infrastructure it started.",
    )
    run.set_defaults(handler=_run)

    infra = commands.add_parser("infra", help="the local Kafka and PostgreSQL")
    infra_commands = infra.add_subparsers(dest="infra_command", required=True, metavar="ACTION")
    for name, handler, text in (
        (
            "up",
            _infra_up,
            "start local Kafka and PostgreSQL in the background (reuses running ones)",
        ),
        ("down", _infra_down, "stop the local Kafka and PostgreSQL"),
        ("status", _infra_status, "show endpoints and whether they answer"),
    ):
        sub = infra_commands.add_parser(name, help=text, description=text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(handler=handler)

    mig = commands.add_parser("migrate", help="apply the core SQL migrations")
    mig.set_defaults(handler=_migrate)

    projections = commands.add_parser("projections", help="run projections")
    projection_commands = projections.add_subparsers(
        dest="projections_command", required=True, metavar="ACTION"
    )
    run_one = projection_commands.add_parser(
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
    return parser


# -- handlers --------------------------------------------------------------------------


def _infra_up(settings: Settings, args: argparse.Namespace) -> int:
    started = local.up(settings)
    return _print_status(started.settings, args.json, started.started)


def _infra_down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = local.down(settings)
    if args.json:
        print(json.dumps({"stopped": stopped}))
    else:
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return EXIT_OK


def _infra_status(settings: Settings, args: argparse.Namespace) -> int:
    return _print_status(settings, args.json, [])


def _print_status(settings: Settings, as_json: bool, started: list[str]) -> int:
    status = local.status(settings)
    if as_json:
        print(json.dumps({"started": started, **status}, default=str))
        return EXIT_OK
    for name, info in status.items():
        state = (
            "external"
            if info["mode"] == "external"
            else ("running" if info.get("running") else "stopped")
        )
        extra = " (started now)" if name in started else ""
        print(f"{name:<9} {state:<9} {info['endpoint']}{extra}")
    return EXIT_OK


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = migrate(settings.require_database())
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return EXIT_OK


def _run(settings: Settings, args: argparse.Namespace) -> int:
    infrastructure = local.up(settings)
    try:
        settings = infrastructure.settings
        migrate(settings.require_database())
        runners = [ProjectionRunner(cls(), settings) for cls in PROJECTIONS.values()]
        return asyncio.run(_serve(settings, runners))
    finally:
        infrastructure.down()


def _projection_run(settings: Settings, args: argparse.Namespace) -> int:
    settings = _require_endpoints(settings)
    migrate(settings.require_database())
    runner = ProjectionRunner(
        PROJECTIONS[args.name](), settings, version=args.version, start_at=args.since
    )
    return asyncio.run(_serve(settings, [runner]))


def _require_endpoints(settings: Settings) -> Settings:
    """Configured endpoints, or the local infrastructure's if it is running."""
    status = local.status(settings)
    if settings.kafka_bootstrap is None and status["kafka"].get("running"):
        settings = settings.replace(kafka_bootstrap=status["kafka"]["endpoint"])
    if settings.database_url is None and status["postgres"].get("running"):
        settings = settings.replace(database_url=status["postgres"]["endpoint"])
    settings.require_kafka()
    settings.require_database()
    return settings


async def _serve(settings: Settings, runners: list[ProjectionRunner]) -> int:
    """Run the runners until SIGINT/SIGTERM; stop them gracefully."""
    await ensure_topics(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
        logger.info("metrics on http://127.0.0.1:%d/metrics", settings.metrics_port)
    for runner in runners:
        await runner.start()
    tune_gc_for_projecting()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for runner in runners:
            runner.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    logger.info("running %s; Ctrl-C to stop", ", ".join(r.projection.name for r in runners))
    results: list[Any] = await asyncio.gather(
        *(runner.run() for runner in runners), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        logger.error("processor failed: %s", failure)
    # A Ctrl-C / SIGTERM is the normal way to stop a service: a clean stop exits 0.
    return EXIT_FAILURE if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
