"""Serving processes: projection runners and HTTP services in one event loop, stopped
together on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import uvicorn
from prometheus_client import start_http_server

from services.cli.common import EXIT_FAILURE, EXIT_OK
from services.settings import Settings
from streams.runtime import ProjectionRunner, tune_gc_for_projecting
from streams.subject_keys import install_personal_codec
from streams.topics import ensure_topics

logger = logging.getLogger("memstream")


class Worker(Protocol):
    """What `serve` runs beside the HTTP services: a ProjectionRunner (one fixed version),
    a LiveProjection, or the RetentionWorker."""

    async def start(self) -> None: ...
    async def run(self) -> None: ...
    def stop(self) -> None: ...


def _name(worker: Worker) -> str:
    if isinstance(worker, ProjectionRunner):
        return f"{worker.projection.name} v{worker.version}"
    return str(getattr(worker, "name", type(worker).__name__))


async def serve(
    settings: Settings,
    runners: Sequence[Worker],
    services: list[HttpService],
    *,
    topics: bool = True,
) -> int:
    """Run the runners and HTTP servers until SIGINT/SIGTERM; stop them gracefully."""
    if topics:
        await ensure_topics(settings)
    # Every event this process appends or reads goes through the personal data codec; a
    # master key that does not open the database's keys stops the process here.
    await asyncio.to_thread(install_personal_codec, settings, check=True)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
        logger.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    if not settings.log_hash_key:
        logger.warning(
            "MEMSTREAM_LOG_HASH_KEY is not set: subjects in log lines are hashed with a"
            " built-in key, a pseudonym anyone can reverse by trying numbers"
        )
    for runner in runners:
        await runner.start()
    if any(not getattr(runner, "keeps_default_gc", False) for runner in runners):
        # Projections in this process (`memstream live` alone keeps CPython's defaults:
        # see LiveProcessor.keeps_default_gc).
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
    names = [_name(r) for r in runners] + [s.name for s in servers]
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
class HttpService:
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
            # Open streams (a call's context, GET /v1/calls/{id}/context) end at a stop
            # rather than holding it up until their own timeout.
            timeout_graceful_shutdown=5,
        )
        logger.info("%s on http://%s:%d", self.name, self.host, self.port)
        return _QuietServer(config, self.name)
