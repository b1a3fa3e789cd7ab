"""The ``memstream`` command (one module per group of subcommands in services/cli/).

    memstream run                      infrastructure (unless configured), the ingest
                                       and query services and every processor
    memstream ingest | query           one service alone
    memstream infra up|down|status     the local Kafka and PostgreSQL (infrastructure.py)
    memstream migrate                  apply the core SQL migrations
    memstream tenants create|list|update
                                       tenants (update: how long transcripts stay readable;
                                       tenants.py)
    memstream keys create|list|revoke  API keys (the token is shown once; stored hashed;
                                       keys.py)
    memstream secrets add|list|revoke  webhook secrets (several active at once: rotation;
                                       webhook_secrets.py)
    memstream projections ...          status, run, rebuild, swap, drop (operations.py)
    memstream reprocess ...            a processor run differently over history (operations.py)
    memstream dlq ...                  dead letters: list, show, replay, purge (dlq.py)
    memstream log ...                  the log: tail, dump, import (eventlog.py)
    memstream log-hash SUBJECT         the hash that process log lines carry for a subject
    memstream encryption ...           the keys that seal personal data (encryption.py)
    memstream audit ...                who read or erased a user's data (audit.py)
    memstream users forget|export      erase a user, or export what is held about them (users.py)
    memstream retention run            expire what is past tenants' retention (retention.py)

This module assembles the parser, dispatches to the handlers and keeps the commands that
serve (run, ingest, query, live) and the one-shot migrate and log-hash. Each group of
subcommands is a module with a ``register(commands)``; shared rendering helpers are in
render.py. Exit codes are in services/cli/common.py and docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

import uvloop

from infra import local
from infra.kafka import KafkaLaunchError
from infra.migrate import migrate
from infra.postgres import PostgresLaunchError
from projections import PROJECTIONS
from projections.lifecycle import LiveProjection
from services.cli import (
    audit,
    dlq,
    encryption,
    eventlog,
    infrastructure,
    keys,
    operations,
    retention,
    tenants,
    users,
    webhook_secrets,
)
from services.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    add_json_flag,
    require_database,
    require_endpoints,
)
from services.cli.render import emit
from services.cli.serve import HttpService, Worker, serve
from services.logs import configure_logging, subject_hash
from services.retention import RetentionWorker
from services.settings import Settings
from services.tenants import TenantError
from streams import BrokerUnavailable, ConfigurationError, DatabaseUnavailable

logger = logging.getLogger("memstream")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format, settings.log_hash_key)
    try:
        result: int = args.handler(settings, args)
        return result
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CommandError as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        return exc.code
    except (ConfigurationError, TenantError) as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BrokerUnavailable, DatabaseUnavailable, KafkaLaunchError, PostgresLaunchError) as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memstream",
        description="Event-sourced memory for voice agents: the log, its projections, its tools.",
        epilog="Configuration comes from MEMSTREAM_* environment variables (see README.md). "
        "Exit codes: 0 success, 1 unexpected failure, 2 bad usage/configuration/input, "
        "3 broker or database unreachable, 4 not found, 5 not done (timeout, items left "
        "failing), 130 interrupted. `--json` on a command prints machine-readable output. "
        "Runbook: docs/operations.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="start everything locally: infrastructure (unless configured) and every processor",
        description="Start Kafka and PostgreSQL unless MEMSTREAM_KAFKA_BOOTSTRAP / "
        "MEMSTREAM_DATABASE_URL are set, apply migrations, create topics, and run the "
        "ingest service (port MEMSTREAM_INGEST_PORT), the query service (port "
        "MEMSTREAM_QUERY_PORT; 0 disables either) and every projection "
        "until Ctrl-C. Stops on exit only the infrastructure it started.",
    )
    run.set_defaults(handler=_run)

    ingest = commands.add_parser(
        "ingest",
        help="run the ingest service alone (webhooks and /v1/events into the log)",
        description="Serve the ingest HTTP API on MEMSTREAM_INGEST_PORT against the configured "
        "(or running local) Kafka and PostgreSQL. Start several behind a load balancer to scale.",
    )
    ingest.add_argument(
        "--host", default=None, help="address to bind (default: MEMSTREAM_INGEST_HOST, 127.0.0.1)"
    )
    ingest.set_defaults(handler=_ingest)

    query = commands.add_parser(
        "query",
        help="run the query service alone (memory search, briefings, agent tools)",
        description="Serve the query HTTP API on MEMSTREAM_QUERY_PORT against the configured "
        "(or running local) Kafka and PostgreSQL. Start several behind a load balancer to scale.",
    )
    query.add_argument(
        "--host", default=None, help="address to bind (default: MEMSTREAM_QUERY_HOST, 127.0.0.1)"
    )
    query.set_defaults(handler=_query)

    live = commands.add_parser(
        "live",
        help="run the live processor alone (per-call state, prefetches, reconstructions)",
        description="Run the live processor (a faust app: services/live) against the "
        "configured (or running local) Kafka and PostgreSQL. Several processes share the "
        "live partitions as one app; `memstream run` starts one unless "
        "MEMSTREAM_LIVE_PROCESSOR=off.",
    )
    live.set_defaults(handler=_live)

    infrastructure.register(commands)

    mig = commands.add_parser(
        "migrate",
        help="apply the core SQL migrations",
        description="Apply infra/migrations/*.sql not yet applied to MEMSTREAM_DATABASE_URL "
        "(or the running local database). Services apply them on start too.",
    )
    add_json_flag(mig, help="machine-readable output")
    mig.set_defaults(handler=_migrate)

    for module in (tenants, keys, webhook_secrets):
        module.register(commands)

    log_hash = commands.add_parser(
        "log-hash",
        help="the `subject_hash` that process log lines carry for a caller",
        description="Log lines name a caller by a keyed hash of their subject, never the "
        "subject itself. Print it (keyed with MEMSTREAM_LOG_HASH_KEY, as the services are) "
        "to find a caller's lines: jq 'select(.subject_hash == \"HASH\")'.",
    )
    log_hash.add_argument("subject", help="tenant/user, e.g. acme/+14155550123 (E.164)")
    add_json_flag(log_hash, help="machine-readable output")
    log_hash.set_defaults(handler=_log_hash)

    for module in (operations, dlq, eventlog, encryption, audit, users, retention):
        module.register(commands)

    return parser


# -- handlers --------------------------------------------------------------------------


# The services' apps are imported when a command serves them: they import FastAPI, the
# tokenizers and the embedding model, seconds that other commands need not pay.
def _ingest_app(settings: Settings) -> Any:
    from services.ingest.app import create_app

    return create_app(settings)


def _query_app(settings: Settings) -> Any:
    from services.query.app import create_app

    return create_app(settings)


def _log_hash(settings: Settings, args: argparse.Namespace) -> int:
    # main() configured logging, and with it the key, from these settings.
    hashed = subject_hash(args.subject)
    emit(args, {"subject": args.subject, "subject_hash": hashed}, hashed)
    return EXIT_OK


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = migrate(require_database(settings).require_database())
    emit(args, {"applied": applied},
         "applied: " + (", ".join(applied) if applied else "nothing (up to date)"))  # fmt: skip
    return EXIT_OK


def _run(settings: Settings, args: argparse.Namespace) -> int:
    infrastructure = local.up(settings)
    try:
        settings = infrastructure.settings
        migrate(settings.require_database())
        # Each projection's live version, following switches (`projections swap`).
        runners: list[Worker] = [LiveProjection(name, settings) for name in PROJECTIONS]
        runners.append(RetentionWorker(settings))  # the tenants' transcript and memory retention
        if settings.live_processor:
            from services.live.worker import LiveProcessor  # faust: only where it runs

            runners.append(LiveProcessor(settings))  # calls in progress (services/live)
        services = [
            HttpService("ingest", _ingest_app, settings.ingest_host, settings.ingest_port),
            HttpService("query", _query_app, settings.query_host, settings.query_port),
        ]
        return asyncio.run(serve(settings, runners, services))
    finally:
        infrastructure.down()


def _live(settings: Settings, args: argparse.Namespace) -> int:
    from services.live.worker import LiveProcessor

    settings = require_endpoints(settings)
    migrate(settings.require_database())
    return asyncio.run(serve(settings, [LiveProcessor(settings)], []))


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    settings = require_endpoints(settings)
    if not settings.ingest_port:
        raise ConfigurationError("MEMSTREAM_INGEST_PORT is 0: the ingest service has no port")
    migrate(settings.require_database())
    # uvloop (with uvicorn's httptools parser, picked when installed): measured the
    # cheaper event loop for a process that only serves HTTP and appends.
    service = HttpService(
        "ingest", _ingest_app, args.host or settings.ingest_host, settings.ingest_port
    )
    return uvloop.run(serve(settings, [], [service]))


def _query(settings: Settings, args: argparse.Namespace) -> int:
    # The database for reads; the broker for POST/DELETE memory (they append events) and
    # for the audit trail of every read (its topic is created here when missing).
    settings = require_endpoints(settings)
    if not settings.query_port:
        raise ConfigurationError("MEMSTREAM_QUERY_PORT is 0: the query service has no port")
    migrate(settings.require_database())
    service = HttpService(
        "query", _query_app, args.host or settings.query_host, settings.query_port
    )
    return uvloop.run(serve(settings, [], [service]))


if __name__ == "__main__":
    sys.exit(main())
