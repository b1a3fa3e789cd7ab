"""The ``memstream`` command (one module per group of subcommands in services/cli/).

    memstream run                      infrastructure (unless configured), the ingest
                                       and query services and every processor
    memstream ingest | query           one service alone
    memstream infra up|down|status     the local Kafka and PostgreSQL
    memstream migrate                  apply the core SQL migrations
    memstream tenants create|list|update
                                       tenants (update: how long transcripts stay readable)
    memstream keys create|list|revoke  API keys (the token is shown once; stored hashed)
    memstream secrets add|list|revoke  webhook secrets (several active at once: rotation)
    memstream projections ...          status, run, rebuild, swap, drop (operations.py)
    memstream reprocess ...            a processor run differently over history (operations.py)
    memstream dlq ...                  dead letters: list, show, replay, purge (dlq.py)
    memstream log ...                  the log: tail, dump, import (eventlog.py)
    memstream log-hash SUBJECT         the hash that process log lines carry for a subject
    memstream encryption ...           the keys that seal personal data (encryption.py)
    memstream audit ...                who read or erased a user's data (audit.py)
    memstream users forget|export      erase a user, or export what is held about them (users.py)
    memstream retention run            expire what is past tenants' retention (retention.py)

Exit codes are in services/cli/common.py and docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import uvloop
from psycopg import AsyncConnection

from infra import local
from infra.kafka import KafkaLaunchError
from infra.migrate import migrate
from infra.postgres import PostgresLaunchError
from projections import PROJECTIONS
from projections.lifecycle import LiveProjection
from services import tenants as tenants_store
from services.cli import audit, dlq, encryption, eventlog, operations, retention, users
from services.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    require_database,
    require_endpoints,
    with_database,
)
from services.cli.render import emit
from services.cli.serve import HttpService, Worker, serve
from services.logs import configure_logging, subject_hash
from services.retention import RetentionWorker
from services.tenants import PLATFORMS, TenantError
from streams import BrokerUnavailable, ConfigurationError, DatabaseUnavailable, Settings

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

    mig = commands.add_parser(
        "migrate",
        help="apply the core SQL migrations",
        description="Apply infra/migrations/*.sql not yet applied to MEMSTREAM_DATABASE_URL "
        "(or the running local database). Services apply them on start too.",
    )
    mig.add_argument("--json", action="store_true", help="machine-readable output")
    mig.set_defaults(handler=_migrate)

    tenants = commands.add_parser("tenants", help="tenants").add_subparsers(
        dest="tenants_command", required=True, metavar="ACTION"
    )
    create = tenants.add_parser("create", help="create a tenant")
    create.add_argument("tenant", help="id: a-z, 0-9, '_' and '-' (used in URLs and subjects)")
    create.add_argument("--name", help="display name (default: the id)")
    create.add_argument("--region", help="ISO country for numbers without a country code, e.g. US")
    create.set_defaults(handler=_tenants_create)
    tenant_list = tenants.add_parser("list", help="list tenants")
    tenant_list.set_defaults(handler=_tenants_list)
    update = tenants.add_parser(
        "update",
        help="set how long a tenant's transcripts and memories stay readable",
        description="Set how long a tenant's call transcripts, and its memories, stay "
        "readable. Once the transcript retention is over after the UTC day a call began in, "
        "the call's turn texts and passages are purged from the read models and their "
        "copies in the log no longer decrypt; memories and summaries stay. Once the memory "
        "retention is over after the UTC day a memory was first said in (reinforcement does "
        "not extend it), the memory, its vector and links are purged and its copies in the "
        "log no longer decrypt. The retention worker of `memstream run` does it every "
        "hour, `memstream retention run` at once (docs/operations.md).",
    )
    update.add_argument("tenant", help="the tenant's id")
    update.add_argument(
        "--transcript-retention",
        metavar="DURATION",
        help="hours, days, weeks or years (36h, 90d, 2w, 1y; 1 hour to 100 years), or off"
        " to keep transcripts for ever",
    )
    update.add_argument(
        "--memory-retention",
        metavar="DURATION",
        help="hours, days, weeks or years (36h, 365d, 52w, 1y; 1 hour to 100 years), or off"
        " to keep memories for ever",
    )
    update.set_defaults(handler=_tenants_update)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    key_create = keys.add_parser("create", help="issue an API key (the token is shown once)")
    key_create.add_argument("--tenant", required=True)
    key_create.add_argument("--label", help="what the key is for")
    key_create.add_argument(
        "--scope",
        action="append",
        choices=tenants_store.SCOPES,
        dest="scopes",
        help="what the key may do, repeatable (default: admin). A key pasted into a voice"
        " platform for the tools should be --scope agent (docs/security.md)",
    )
    key_create.add_argument(
        "--allow-user-argument",
        action="store_true",
        help="let the agent tools take the caller from a `user` argument when the platform"
        " binds none to the call (the argument is written by the LLM: docs/security.md)",
    )
    key_create.set_defaults(handler=_keys_create)
    key_list = keys.add_parser("list", help="a tenant's keys (never their secrets)")
    key_list.add_argument("--tenant", required=True)
    key_list.set_defaults(handler=_keys_list)
    key_revoke = keys.add_parser("revoke", help="revoke a key by its id")
    key_revoke.add_argument("key_id")
    key_revoke.set_defaults(handler=_keys_revoke)

    webhook = commands.add_parser("secrets", help="webhook secrets").add_subparsers(
        dest="secrets_command", required=True, metavar="ACTION"
    )
    secret_add = webhook.add_parser(
        "add", help="add an active webhook secret (generated unless --secret); rotation: add, "
        "switch the platform over, then revoke the old one",
    )  # fmt: skip
    secret_add.add_argument("--tenant", required=True)
    secret_add.add_argument("--platform", required=True, choices=PLATFORMS)
    secret_add.add_argument("--secret", help="the platform's secret (default: generate one)")
    secret_add.set_defaults(handler=_secrets_add)
    secret_list = webhook.add_parser("list", help="a tenant's webhook secrets")
    secret_list.add_argument("--tenant", required=True)
    secret_list.set_defaults(handler=_secrets_list)
    secret_revoke = webhook.add_parser("revoke", help="revoke a webhook secret by its id")
    secret_revoke.add_argument("secret_id", type=int)
    secret_revoke.set_defaults(handler=_secrets_revoke)

    log_hash = commands.add_parser(
        "log-hash",
        help="the `subject_hash` that process log lines carry for a caller",
        description="Log lines name a caller by a keyed hash of their subject, never the "
        "subject itself. Print it (keyed with MEMSTREAM_LOG_HASH_KEY, as the services are) "
        "to find a caller's lines: jq 'select(.subject_hash == \"HASH\")'.",
    )
    log_hash.add_argument("subject", help="tenant/user, e.g. acme/+14155550123 (E.164)")
    log_hash.add_argument("--json", action="store_true", help="machine-readable output")
    log_hash.set_defaults(handler=_log_hash)

    for module in (operations, dlq, eventlog, encryption, audit, users, retention):
        module.register(commands)

    for sub in (create, tenant_list, update, key_create, key_list, key_revoke, secret_add,
                secret_list, secret_revoke):  # fmt: skip
        sub.add_argument("--json", action="store_true", help="machine-readable output")
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


# -- tenants and credentials ----------------------------------------------------------


def _tenants_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        tenant = await tenants_store.create_tenant(conn, args.tenant, args.name, args.region)
        emit(args, dataclasses.asdict(tenant), f"created tenant {tenant.tenant}")
        return EXIT_OK

    return with_database(work, settings)


def _tenants_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        found = await tenants_store.list_tenants(conn)
        text = (
            "\n".join(
                f"{t.tenant:<24} {t.name:<24} transcripts: {_retention(t.transcript_retention)}"
                f"  memories: {_retention(t.memory_retention)}"
                for t in found
            )
            or "no tenants"
        )
        emit(args, [_tenant_json(t) for t in found], text)
        return EXIT_OK

    return with_database(work, settings)


def _tenants_update(settings: Settings, args: argparse.Namespace) -> int:
    # Checked before connecting: a mistyped duration needs no database to be refused.
    given = {
        what: text
        for what, text in (
            ("transcript", args.transcript_retention),
            ("memory", args.memory_retention),
        )
        if text is not None
    }
    if not given:
        raise CommandError("say --transcript-retention, --memory-retention or both", EXIT_USAGE)
    retentions = {what: tenants_store.parse_retention(text, what) for what, text in given.items()}

    async def work(conn: AsyncConnection[Any]) -> int:
        try:
            async with conn.transaction():
                for what, retention in retentions.items():
                    tenant = await tenants_store.set_retention(conn, args.tenant, what, retention)
        except TenantError as exc:
            if exc.code != "unknown_tenant":
                raise
            raise CommandError(f"{exc} (memstream tenants list)", EXIT_NOT_FOUND) from None
        said = []  # what was set
        for what, kept_what, retention in (
            ("transcript", "transcripts", tenant.transcript_retention),
            ("memory", "memories", tenant.memory_retention),
        ):
            if what in retentions:
                kept = "for ever" if retention is None else f"for {_retention(retention)}"
                said.append(f"{kept_what} kept {kept}")
        emit(args, _tenant_json(tenant), f"tenant {tenant.tenant}: {', '.join(said)}")
        return EXIT_OK

    return with_database(work, settings)


def _tenant_json(tenant: tenants_store.Tenant) -> dict[str, Any]:
    """A tenant for --json: each retention in seconds (null: kept for ever)."""
    row = dataclasses.asdict(tenant)
    for column in tenants_store.RETENTIONS.values():
        retention = row.pop(column)
        row[f"{column}_s"] = None if retention is None else int(retention.total_seconds())
    return row


def _retention(retention: timedelta | None) -> str:
    """``90 days``, ``36 hours``, or ``kept`` (for ever)."""
    if retention is None:
        return "kept"
    days, seconds = divmod(int(retention.total_seconds()), 86400)
    if not seconds:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = int(retention.total_seconds()) / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        issued = await tenants_store.issue_api_key(
            conn,
            args.tenant,
            args.label,
            args.scopes or ("admin",),
            allow_user_argument=args.allow_user_argument,
        )
        text = (f"key {issued.key_id} for {issued.tenant} ({', '.join(issued.scopes)});"
                f" the token is shown only now:\n{issued.token}")  # fmt: skip
        emit(args, dataclasses.asdict(issued), text)
        return EXIT_OK

    return with_database(work, settings)


def _keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        found = await tenants_store.list_api_keys(conn, args.tenant)
        text = (
            "\n".join(
                f"{k.key_id}  {'revoked' if k.revoked_at else 'active ':<8}"
                f" {','.join(k.scopes):<24} {k.label or ''}"
                for k in found
            )
            or "no keys"
        )
        emit(args, [dataclasses.asdict(k) for k in found], text)
        return EXIT_OK

    return with_database(work, settings)


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        revoked = await tenants_store.revoke_api_key(conn, args.key_id)
        emit(args, {"revoked": revoked}, "revoked" if revoked else "no such active key")
        return EXIT_OK if revoked else EXIT_NOT_FOUND

    return with_database(work, settings)


def _secrets_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        added = await tenants_store.add_webhook_secret(
            conn, args.tenant, args.platform, args.secret
        )
        text = f"secret {added.secret_id} for {added.tenant}/{added.platform}: {added.secret}"
        emit(args, dataclasses.asdict(added), text)
        return EXIT_OK

    return with_database(work, settings)


def _secrets_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        found = await tenants_store.list_webhook_secrets(conn, args.tenant)
        text = (
            "\n".join(
                f"{w.secret_id:>5}  {w.platform:<16} {'revoked' if w.revoked_at else 'active'}"
                for w in found
            )
            or "no secrets"
        )
        # Listing never prints the secrets themselves.
        rows = [{k: v for k, v in dataclasses.asdict(w).items() if k != "secret"} for w in found]
        emit(args, rows, text)
        return EXIT_OK

    return with_database(work, settings)


def _secrets_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        revoked = await tenants_store.revoke_webhook_secret(conn, args.secret_id)
        emit(args, {"revoked": revoked}, "revoked" if revoked else "no such active secret")
        return EXIT_OK if revoked else EXIT_NOT_FOUND

    return with_database(work, settings)


if __name__ == "__main__":
    sys.exit(main())
