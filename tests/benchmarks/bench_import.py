"""``memstream log import`` and ``log dump``: history in and out, through the real command.

- Import: 10,000 ElevenLabs post-call transcription webhooks (the repository's sample
  payload, ~7 KB each, every one its own conversation and caller), one JSON object a
  line, imported by ``memstream log import`` run as a process (start-up, migrations,
  topic check, ledger catch-up, parsing, batched appends acknowledged by the broker,
  ledger writes). Then the same file again: every line already imported.
- Dump: ``memstream log dump --json`` of the events that import appended, to a file.

Wall time of the whole command, so process start-up (~4 s on the 2-core machine) is
included; "per CPU second" divides by the command's own CPU time (user + system), which
stays meaningful on a machine that other work slows down.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from psycopg import AsyncConnection

from services import tenants
from tests.benchmarks.harness import BenchmarkContext, Figure
from tests.integration.ingest_fixtures import payload

CONVERSATIONS_N = 10_000
TENANT = "bench"


def _history(path: Path, n: int) -> int:
    """Write n distinct conversations as webhook bodies, one a line; return the bytes."""
    body = payload("elevenlabs_post_call_transcription")
    variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
    with path.open("wb") as out:
        for i in range(n):
            body["data"]["conversation_id"] = f"conv-{i:07d}"
            variables["system__caller_id"] = f"+1415{i:07d}"
            out.write(orjson.dumps(body) + b"\n")
    return path.stat().st_size


def _memstream(ctx: BenchmarkContext, *args: str) -> tuple[float, float, bytes]:
    """Run `memstream ARGS`; (wall seconds, CPU seconds of the process, stdout).

    The CPU time (user + system) says what the command costs whatever else the machine
    runs; the wall time is what a user waits. Fails the benchmark on a bad exit.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **ctx.settings.to_env(), "MEMSTREAM_LOG_LEVEL": "WARNING"},
        capture_output=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise RuntimeError(f"memstream {' '.join(args)} exited {result.returncode}: "
                           f"{result.stderr.decode()[-2000:]}")  # fmt: skip
    return seconds, cpu, result.stdout


async def run(ctx: BenchmarkContext) -> list[Figure]:
    n = ctx.scaled(CONVERSATIONS_N)
    async with await AsyncConnection.connect(
        ctx.settings.require_database(), autocommit=True
    ) as conn:
        await tenants.create_tenant(conn, TENANT, default_region="US")
    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "history.jsonl"
        size = _history(history, n)
        params = {"lines": n, "MB": round(size / 1e6, 1)}
        first, first_cpu, out = await asyncio.to_thread(
            _memstream, ctx, "log", "import", str(history), "--tenant", TENANT, "--json"
        )
        appended = orjson.loads(out)["events_appended"]
        if appended != n:
            raise RuntimeError(f"the import appended {appended} events, not {n}")
        again, again_cpu, out = await asyncio.to_thread(
            _memstream, ctx, "log", "import", str(history), "--tenant", TENANT, "--json"
        )
        if orjson.loads(out)["already_imported"] != n:
            raise RuntimeError(f"the second import did not find all {n} lines imported")
        dumped = Path(tmp) / "dump.jsonl"
        dump, dump_cpu, _ = await asyncio.to_thread(
            _memstream, ctx, "log", "dump", "--json", "--output", str(dumped)
        )
    return [
        ctx.figure("import, new conversations", n / first, "lines/s", params=params),
        ctx.figure("import, new conversations, per CPU second", n / first_cpu, "lines/s",
                   params=params),
        ctx.figure("import again, all already imported", n / again, "lines/s", params=params),
        ctx.figure("import again, per CPU second", n / again_cpu, "lines/s", params=params),
        ctx.figure("dump --json to a file", n / dump, "events/s", params={"events": n}),
        ctx.figure("dump --json, per CPU second", n / dump_cpu, "events/s",
                   params={"events": n}),
    ]  # fmt: skip
