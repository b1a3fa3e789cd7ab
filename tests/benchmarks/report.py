"""The machine a run measured on, and ``docs/benchmarks.md``: rendering and merging sections.

The document is regenerated on every run. Each benchmark owns one section between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; a run replaces the sections of
the benchmarks it ran and keeps every other section as it was, so running one
benchmark never erases another's figures.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psycopg import AsyncConnection

from tests.benchmarks.harness import Benchmark, Figure

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "benchmarks.md"
KAFKA_POM = REPO / "infra" / "kafka" / "pom.xml"

_SECTION = re.compile(
    r"<!-- bench:(?P<name>[\w.-]+) -->\n.*?<!-- /bench:(?P=name) -->\n?", re.DOTALL
)


@dataclass(frozen=True)
class Machine:
    """Where the figures were measured."""

    cores: int
    memory_gib: float
    cpu_model: str
    os: str
    python: str
    kafka: str
    postgres: str
    #: 1-minute load average when the run began: other work on the machine skews figures.
    load: float

    def summary(self) -> str:
        """One line, repeated in each section (sections outlive the header's run)."""
        return (
            f"{self.cores} cores ({self.cpu_model}), {self.memory_gib:.1f} GiB, "
            f"Python {self.python}, Kafka {self.kafka}, {self.postgres.split(' on ')[0]}, "
            f"load average {self.load:.2f} at the start"
        )


async def describe_machine(database_url: str) -> Machine:
    """Read the machine's facts (nproc, /proc/meminfo, /proc/cpuinfo) and the servers' versions."""
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT version()")
        row = await cursor.fetchone()
    return Machine(
        cores=len(os.sched_getaffinity(0)),  # what `nproc` prints
        memory_gib=_meminfo_kib("MemTotal") / 2**20,
        cpu_model=_cpu_model(),
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        kafka=_kafka_version(),
        postgres=str(row[0]) if row else "unknown",
        load=os.getloadavg()[0],
    )


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", KAFKA_POM.read_text())
    return match.group(1) if match else "unknown"


# -- rendering ------------------------------------------------------------------------


def format_value(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _met(figure: Figure) -> str:
    return {True: "yes", False: "**no**", None: "-"}[figure.meets_target]


def _params(params: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def render_section(
    benchmark: Benchmark, figures: Sequence[Figure], machine: Machine, when: datetime
) -> str:
    lines = [
        f"<!-- bench:{benchmark.name} -->",
        f"## {benchmark.name}",
        "",
        f"Measured {when:%Y-%m-%d %H:%M} UTC on {machine.summary()}; "
        f"reproduce with `python -m tests.benchmarks bench_{benchmark.name}`.",
        "",
        benchmark.description,
        "",
        "| metric | value | unit | target | met? |",
        "| --- | ---: | --- | --- | --- |",
    ]
    for f in figures:
        target = "-" if f.target is None else str(f.target)
        lines.append(f"| {f.metric} | {format_value(f.value)} | {f.unit} | {target} | {_met(f)} |")
    # Conditions: what all figures share once, then what is particular to each figure.
    common = dict(figures[0].params) if figures else {}
    for f in figures[1:]:
        common = {k: v for k, v in common.items() if k in f.params and f.params[k] == v}
    lines += [
        "",
        f"Conditions of every figure: {_params(common)}." if common else "Conditions:",
        "",
    ]
    groups: dict[str, list[str]] = {}  # figures measured under the same conditions
    for f in figures:
        own = _params({k: v for k, v in f.params.items() if k not in common})
        if own:
            groups.setdefault(own, []).append(f.metric)
    lines += [f"- {', '.join(metrics)}: {own}" for own, metrics in groups.items()]
    lines += [f"<!-- /bench:{benchmark.name} -->", ""]
    return "\n".join(lines)


def render_header(machine: Machine, when: datetime, ran: Sequence[str]) -> str:
    return "\n".join(
        [
            "# Benchmarks",
            "",
            "<!-- Written by `make bench` (tests/benchmarks/report.py): edit the benchmark"
            " modules, not this file. -->",
            "",
            "Every figure here comes from `make bench`, which runs `python -m tests.benchmarks`:",
            "each module `tests/benchmarks/bench_*.py` runs against real Kafka and PostgreSQL",
            "(the local ones from `infra/`, or `MEMSTREAM_KAFKA_BOOTSTRAP` /",
            "`MEMSTREAM_DATABASE_URL`), with a topic prefix and a migrated database of its own",
            "that are removed afterwards. Every figure is also printed as one JSON line on stdout.",
            "`python -m tests.benchmarks bench_NAME` runs one benchmark and rewrites only its",
            "section below. Inputs are built before any clock starts; each section says what its",
            "timed region contains. Figures are reported as measured, whether or not they meet",
            "their target.",
            "",
            f"Last run: {when:%Y-%m-%d %H:%M} UTC ({', '.join(ran)}), on this machine:",
            "",
            "| | |",
            "| --- | --- |",
            f"| CPU | {machine.cpu_model}, {machine.cores} cores (`nproc`) |",
            f"| memory | {machine.memory_gib:.1f} GiB (`MemTotal`) |",
            f"| OS | {machine.os} |",
            f"| Python | {machine.python} |",
            f"| Kafka | {machine.kafka} (infra/kafka/pom.xml), single node, KRaft |",
            f"| PostgreSQL | {machine.postgres} |",
            f"| load average at the start | {machine.load:.2f} (1 min) |",
            "",
            "The broker, the database and the benchmark process share these cores, as they do",
            "under `make run` on one machine; anything else running on them lowers the figures,",
            "hence the load average above.",
            "",
        ]
    )


def existing_sections(text: str) -> dict[str, str]:
    """The sections of a previous document, by benchmark name."""
    return {m.group("name"): m.group(0).rstrip("\n") + "\n" for m in _SECTION.finditer(text)}


def write(
    machine: Machine,
    when: datetime,
    fresh: Mapping[str, str],
    path: Path = DOCS,
) -> None:
    """Rewrite the document: a new header, fresh sections, and the other ones kept."""
    sections = existing_sections(path.read_text()) if path.exists() else {}
    sections.update(fresh)
    body = "\n".join(sections[name] for name in sorted(sections))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_header(machine, when, sorted(fresh)) + "\n" + body)
