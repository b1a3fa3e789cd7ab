"""``python -m tests.benchmarks [bench_NAME ...]``: run benchmarks, print JSON, update the docs.

1. bring up the infrastructure (``infra.local.up``: reuses a running local broker and
   database, starts what is missing, uses ``MEMSTREAM_*`` endpoints when set);
2. for each benchmark: a topic prefix and a migrated database of its own, ``run(ctx)``,
   one JSON line per figure on stdout, then prefix and database removed;
3. rewrite ``docs/benchmarks.md`` with the sections of the benchmarks that ran
   (others are kept), unless ``--no-docs`` or ``--scale`` other than 1;
4. stop only what step 1 started.

Progress goes to stderr. The exit status is 1 if a benchmark failed (its section is
left as it was); a missed target is a figure, not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from infra import local
from services.settings import Settings
from tests.benchmarks import report
from tests.benchmarks.harness import (
    Benchmark,
    BenchmarkContext,
    discover,
    isolated_settings,
    select,
)

logger = logging.getLogger("tests.benchmarks")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("benchmarks", nargs="*", help="bench_NAME modules to run (default: all)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the benchmarks' sizes (a quick check: 0.1); docs are then not written",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    return parser.parse_args(argv)


async def run_all(
    settings: Settings, benchmarks: Sequence[Benchmark], scale: float, docs: bool
) -> bool:
    """Run the benchmarks in order; return True if all of them completed."""
    when = datetime.now(UTC)
    machine = await report.describe_machine(settings.require_database())
    sections: dict[str, str] = {}
    ok = True
    for benchmark in benchmarks:
        logger.info("running bench_%s", benchmark.name)
        began = time.monotonic()
        try:
            async with isolated_settings(settings, benchmark.name) as isolated:
                figures = await benchmark.run(BenchmarkContext(benchmark.name, isolated, scale))
        except Exception:
            logger.exception(
                "bench_%s failed; its section of the docs is left as it was", benchmark.name
            )
            ok = False
            continue
        for figure in figures:
            print(json.dumps(figure.to_json()), flush=True)
        logger.info("bench_%s took %.0f s", benchmark.name, time.monotonic() - began)
        sections[benchmark.name] = report.render_section(benchmark, figures, machine, when)
    if docs and sections:
        report.write(machine, when, sections)
        logger.info("wrote %s", report.DOCS)
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    logging.getLogger("tests.benchmarks").setLevel(logging.INFO)
    benchmarks = select(discover(), args.benchmarks)
    infrastructure = local.up(Settings.from_env())
    try:
        ok = asyncio.run(
            run_all(
                infrastructure.settings,
                benchmarks,
                args.scale,
                docs=not args.no_docs and args.scale == 1,
            )
        )
    finally:
        infrastructure.down()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
