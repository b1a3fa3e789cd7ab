"""The ``memstream`` command.

    memstream run                      infrastructure (unless configured), the ingest
                                       and query services and every processor
    memstream ingest                   the ingest service alone (webhooks in)
    memstream query                    the query service alone (search, briefing, tools)
    memstream infra up|down|status     the local Kafka and PostgreSQL
    memstream migrate                  apply the core SQL migrations
    memstream projections run NAME     one projection as a worker of its consumer group
    memstream tenants create|list      tenants
    memstream keys create|list|revoke  API keys (the token is shown once; stored hashed)
    memstream secrets add|list|revoke  webhook secrets (several active at once: rotation)

Exit codes: 0 success; 1 unexpected failure; 2 bad usage, configuration or input;
3 infrastructure unreachable (broker or database); 4 not found; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import uvicorn
import uvloop
from prometheus_client import start_http_server
from psycopg import AsyncConnection

from infra import local
from infra.kafka import KafkaLaunchError
from infra.migrate import migrate
from infra.postgres import PostgresLaunchError
from projections import PROJECTIONS
from services import tenants as tenants_store
from services.ingest.app import create_app as create_ingest_app
from services.logs import configure_logging
from services.query.app import create_app as create_query_app
from services.tenants import PLATFORMS, TenantError
from streams import BrokerUnavailable, ConfigurationError, DatabaseUnavailable, Settings
from streams.runtime import ProjectionRunner, tune_gc_for_projecting
from streams.topics import ensure_topics

logger = logging.getLogger("memstream")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    try:
        result: int = args.handler(settings, args)
        return result
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
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
        epilog="Configuration comes from MEMSTREAM_* environment variables (see README.md).",
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

    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    key_create = keys.add_parser("create", help="issue an API key (the token is shown once)")
    key_create.add_argument("--tenant", required=True)
    key_create.add_argument("--label", help="what the key is for")
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

    for sub in (create, tenant_list, key_create, key_list, key_revoke, secret_add, secret_list,
                secret_revoke):  # fmt: skip
        sub.add_argument("--json", action="store_true", help="machine-readable output")
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
        runners = [
            ProjectionRunner(cls.from_settings(settings), settings) for cls in PROJECTIONS.values()
        ]
        services = [
            _HttpService("ingest", create_ingest_app, settings.ingest_host, settings.ingest_port),
            _HttpService("query", create_query_app, settings.query_host, settings.query_port),
        ]
        return asyncio.run(_serve(settings, runners, services))
    finally:
        infrastructure.down()


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    settings = _require_endpoints(settings)
    if not settings.ingest_port:
        raise ConfigurationError("MEMSTREAM_INGEST_PORT is 0: the ingest service has no port")
    migrate(settings.require_database())
    # uvloop (with uvicorn's httptools parser, picked when installed): measured the
    # cheaper event loop for a process that only serves HTTP and appends.
    service = _HttpService(
        "ingest", create_ingest_app, args.host or settings.ingest_host, settings.ingest_port
    )
    return uvloop.run(_serve(settings, [], [service]))


def _query(settings: Settings, args: argparse.Namespace) -> int:
    # The database for reads; the broker for POST/DELETE memory (they append events).
    settings = _require_endpoints(settings)
    if not settings.query_port:
        raise ConfigurationError("MEMSTREAM_QUERY_PORT is 0: the query service has no port")
    migrate(settings.require_database())
    service = _HttpService(
        "query", create_query_app, args.host or settings.query_host, settings.query_port
    )
    return uvloop.run(_serve(settings, [], [service], topics=False))


def _projection_run(settings: Settings, args: argparse.Namespace) -> int:
    settings = _require_endpoints(settings)
    migrate(settings.require_database())
    runner = ProjectionRunner(
        PROJECTIONS[args.name].from_settings(settings),
        settings,
        version=args.version,
        start_at=args.since,
    )
    return asyncio.run(_serve(settings, [runner], []))


def _require_database(settings: Settings) -> Settings:
    """The configured database, or the local one if it is running."""
    status = local.status(settings)
    if settings.database_url is None and status["postgres"].get("running"):
        settings = settings.replace(database_url=status["postgres"]["endpoint"])
    settings.require_database()
    return settings


def _require_endpoints(settings: Settings) -> Settings:
    """Configured endpoints, or the local infrastructure's if it is running."""
    settings = _require_database(settings)
    status = local.status(settings)
    if settings.kafka_bootstrap is None and status["kafka"].get("running"):
        settings = settings.replace(kafka_bootstrap=status["kafka"]["endpoint"])
    settings.require_kafka()
    return settings


# -- tenants and credentials ----------------------------------------------------------


def _with_database(
    work: Callable[[AsyncConnection[Any]], Awaitable[int]], settings: Settings
) -> int:
    settings = _require_database(settings)
    migrate(settings.require_database())

    async def run() -> int:
        try:
            conn = await AsyncConnection.connect(settings.require_database(), autocommit=True)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(settings.require_database(), str(exc).strip()) from exc
        async with conn:
            return await work(conn)

    return asyncio.run(run())


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, default=str) if args.json else text)


def _tenants_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        tenant = await tenants_store.create_tenant(conn, args.tenant, args.name, args.region)
        _emit(args, dataclasses.asdict(tenant), f"created tenant {tenant.tenant}")
        return EXIT_OK

    return _with_database(work, settings)


def _tenants_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        found = await tenants_store.list_tenants(conn)
        text = "\n".join(f"{t.tenant:<24} {t.name}" for t in found) or "no tenants"
        _emit(args, [dataclasses.asdict(t) for t in found], text)
        return EXIT_OK

    return _with_database(work, settings)


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        issued = await tenants_store.issue_api_key(conn, args.tenant, args.label)
        text = (f"key {issued.key_id} for {issued.tenant}; the token is shown only now:\n"
                f"{issued.token}")  # fmt: skip
        _emit(args, dataclasses.asdict(issued), text)
        return EXIT_OK

    return _with_database(work, settings)


def _keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        found = await tenants_store.list_api_keys(conn, args.tenant)
        text = (
            "\n".join(
                f"{k.key_id}  {'revoked' if k.revoked_at else 'active ':<8} {k.label or ''}"
                for k in found
            )
            or "no keys"
        )
        _emit(args, [dataclasses.asdict(k) for k in found], text)
        return EXIT_OK

    return _with_database(work, settings)


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        revoked = await tenants_store.revoke_api_key(conn, args.key_id)
        _emit(args, {"revoked": revoked}, "revoked" if revoked else "no such active key")
        return EXIT_OK if revoked else EXIT_NOT_FOUND

    return _with_database(work, settings)


def _secrets_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        added = await tenants_store.add_webhook_secret(
            conn, args.tenant, args.platform, args.secret
        )
        text = f"secret {added.secret_id} for {added.tenant}/{added.platform}: {added.secret}"
        _emit(args, dataclasses.asdict(added), text)
        return EXIT_OK

    return _with_database(work, settings)


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
        _emit(args, rows, text)
        return EXIT_OK

    return _with_database(work, settings)


def _secrets_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection[Any]) -> int:
        revoked = await tenants_store.revoke_webhook_secret(conn, args.secret_id)
        _emit(args, {"revoked": revoked}, "revoked" if revoked else "no such active secret")
        return EXIT_OK if revoked else EXIT_NOT_FOUND

    return _with_database(work, settings)


async def _serve(
    settings: Settings,
    runners: list[ProjectionRunner],
    services: list[_HttpService],
    *,
    topics: bool = True,
) -> int:
    """Run the runners and HTTP servers until SIGINT/SIGTERM; stop them gracefully."""
    if topics:
        await ensure_topics(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
        logger.info("metrics on http://127.0.0.1:%d/metrics", settings.metrics_port)
    for runner in runners:
        await runner.start()
    if runners:
        tune_gc_for_projecting()
    else:
        # An ingest process: what is loaded by now (modules, the app, pydantic models)
        # lives as long as the process. Out of the collector's sight, a full collection
        # no longer blocks the loop for 50-60 ms every few seconds, which was the p99
        # tail of webhook acknowledgements (docs/benchmarks.md).
        gc.collect()
        gc.freeze()
    # Apps are built inside the running loop: their Kafka producers must be.
    servers = [server for service in services if (server := service.server(settings))]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for runner in runners:
            runner.stop()
        for server in servers:
            server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    names = [r.projection.name for r in runners] + [s.name for s in servers]
    logger.info("running %s; Ctrl-C to stop", ", ".join(names))
    tasks = [runner.run() for runner in runners] + [server.serve() for server in servers]
    results: list[Any] = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        logger.error("processor failed: %s", failure)
    # A Ctrl-C / SIGTERM is the normal way to stop a service: a clean stop exits 0.
    return EXIT_FAILURE if failures else EXIT_OK


class _QuietServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handling: `_serve` stops everything together."""

    def __init__(self, config: uvicorn.Config, name: str) -> None:
        super().__init__(config)
        self.name = name

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class _HttpService:
    """An ASGI app to serve: its name, how to build it, where to listen (port 0: not)."""

    name: str
    create_app: Callable[[Settings], Any]
    host: str
    port: int

    def server(self, settings: Settings) -> _QuietServer | None:
        """The app on uvicorn, sharing this process's event loop and signal handling."""
        if not self.port:
            return None
        config = uvicorn.Config(
            self.create_app(settings),
            host=self.host,
            port=self.port,
            log_config=None,  # keep memstream's logging configuration
            access_log=False,  # requests are counted in /metrics; errors are logged
            lifespan="on",
        )
        logger.info("%s on http://%s:%d", self.name, self.host, self.port)
        return _QuietServer(config, self.name)


if __name__ == "__main__":
    sys.exit(main())
