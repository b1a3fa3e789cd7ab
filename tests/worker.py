"""A projection worker process for tests that need a real process to crash or be killed.

Reads its settings from MEMSTREAM_* variables; MEMSTREAM_TEST_CRASH_AT names a step of
the batch sequence (streams.runtime.FAULT_POINTS) and MEMSTREAM_TEST_CRASH_BATCH the
batch number at which the process dies with os._exit — no cleanup, no rollback sent,
no group leave: as abrupt as a kill.
"""

from __future__ import annotations

import asyncio
import os
import signal

from services.settings import Settings
from streams.runtime import ProjectionRunner
from tests.ledger import LedgerProjection

CRASH_EXIT_CODE = 86


def main() -> None:
    crash_at = os.environ.get("MEMSTREAM_TEST_CRASH_AT")
    crash_batch = int(os.environ.get("MEMSTREAM_TEST_CRASH_BATCH", "1"))
    seen: dict[str, int] = {}

    def fault(step: str) -> None:
        seen[step] = seen.get(step, 0) + 1
        if step == crash_at and seen[step] == crash_batch:
            os._exit(CRASH_EXIT_CODE)

    async def run() -> None:
        runner = ProjectionRunner(LedgerProjection(), Settings.from_env(), fault=fault)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runner.stop)
        await runner.run()

    asyncio.run(run())


if __name__ == "__main__":
    main()
