"""A local single-node Apache Kafka 4.x (KRaft) started from its Maven Central artifacts.

Life cycle, all under ``<home>/kafka`` (``.memstream/kafka`` by default):

1. ``mvn dependency:copy-dependencies`` on ``infra/kafka/pom.xml`` copies the broker's
   jars into ``lib/`` (once; redone when the pom changes).
2. ``kafka.tools.StorageTool format`` formats ``data/`` once, with a fresh cluster id.
3. ``java kafka.Kafka server.properties`` runs as a background process; its pid goes
   to ``kafka.pid``. We wait until the broker answers a metadata request.

A broker already answering on the port is reused; ``stop`` stops only a broker this
module started (it has a pid file).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from infra.process import port_open, read_pid, tail, terminate
from infra.settings import InfraSettings

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
HOST = "127.0.0.1"


class KafkaLaunchError(RuntimeError):
    """The local broker could not be installed, formatted or started."""


@dataclass(frozen=True)
class LocalKafka:
    """Where the local broker lives and listens."""

    root: Path
    port: int
    heap: str = "768m"

    @classmethod
    def from_settings(cls, settings: InfraSettings) -> LocalKafka:
        return cls(
            root=settings.home / "kafka",
            port=settings.local_kafka_port,
            heap=settings.kafka_heap,
        )

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "kafka.log"

    @property
    def config_file(self) -> Path:
        return self.root / "server.properties"

    # -- status -----------------------------------------------------------------------

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def answering(self) -> bool:
        return port_open(HOST, self.port)

    # -- life cycle -------------------------------------------------------------------

    def ensure_running(self, timeout: float = 90.0) -> bool:
        """Start the broker unless one answers already. True if this call started it."""
        if self.answering():
            logger.info("reusing the Kafka broker already answering on %s", self.bootstrap)
            wait_until_ready(self.bootstrap, timeout)
            return False
        self.install()
        self.write_config()
        self.format_storage()
        self.start()
        try:
            wait_until_ready(self.bootstrap, timeout, pid_file=self.pid_file)
        except KafkaLaunchError:
            self.stop()
            raise KafkaLaunchError(
                f"Kafka did not become ready on {self.bootstrap} within {timeout:.0f}s; "
                f"last lines of {self.log_file}:\n{tail(self.log_file)}"
            ) from None
        return True

    def install(self) -> None:
        """Copy the broker's jars from Maven (Central or the local ~/.m2 cache) into lib/."""
        stamp = self.lib / ".pom-sha256"
        digest = hashlib.sha256(POM.read_bytes()).hexdigest()
        if stamp.exists() and stamp.read_text() == digest:
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLaunchError(
                "Maven (mvn) is needed to fetch Apache Kafka from Maven Central; install it "
                "(e.g. `apt-get install maven`) or set MEMSTREAM_KAFKA_BOOTSTRAP"
            )
        if self.lib.exists():
            shutil.rmtree(self.lib)
        self.lib.mkdir(parents=True)
        logger.info("resolving Apache Kafka with Maven into %s", self.lib)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.lib}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise KafkaLaunchError(f"mvn failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        stamp.write_text(digest)

    def write_config(self) -> None:
        controller_port = self.port + 1
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "\n".join(
                [
                    "# Written by infra/kafka: single-node KRaft broker for local runs and tests.",
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{HOST}:{controller_port}",
                    f"listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{controller_port}",
                    f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data}",
                    # memstream creates its topics explicitly with their configs.
                    "auto.create.topics.enable=false",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )

    def format_storage(self) -> None:
        if (self.data / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                # One argument: an id that starts with "-" (1 in 64) is not an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.config_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise KafkaLaunchError(
                f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}"
            )

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [*self._java(), "kafka.Kafka", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the launcher; Ctrl-C in a shell won't hit it
            )
        self.pid_file.write_text(str(process.pid))
        logger.info("started Kafka (pid %s) on %s", process.pid, self.bootstrap)

    def stop(self) -> bool:
        """Stop the broker if this module started it. True if something was stopped."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        terminate(pid)
        return True

    def _java(self) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise KafkaLaunchError("Java 17+ is needed to run the local Kafka broker")
        return [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self.lib}/*",
        ]


def wait_until_ready(bootstrap: str, timeout: float, pid_file: Path | None = None) -> None:
    """Block until the broker answers a metadata request (raises KafkaLaunchError)."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if pid_file is not None and read_pid(pid_file) is None:
            raise KafkaLaunchError("the Kafka process exited during start-up")
        host, _, port = bootstrap.rpartition(":")
        if not port_open(host, int(port)):
            last_error = "port closed"
            time.sleep(0.3)
            continue
        try:
            asyncio.run(_describe_cluster(bootstrap))
            return
        except Exception as exc:  # any failure means "not ready yet"
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise KafkaLaunchError(f"Kafka at {bootstrap} not ready: {last_error}")


async def _describe_cluster(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.describe_cluster()
    finally:
        await admin.close()
