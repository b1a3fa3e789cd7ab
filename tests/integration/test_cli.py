"""The `memstream` command as a user runs it: a real process, real infrastructure."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from typing import Any

from projections.conversations import get_conversation
from streams import EventLog, Settings
from streams.offsets import partitions_of
from streams.topics import Topics
from tests.helpers import call_events, closed_port, eventually


async def test_memstream_run_projects_the_log_serves_metrics_and_stops_cleanly(
    settings: Settings, db: Any
) -> None:
    metrics_port = closed_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run"],
        env={**os.environ, **settings.to_env(), "MEMSTREAM_METRICS_PORT": str(metrics_port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with EventLog(settings) as log:
            conversations = Topics(settings.topic_prefix).conversations
            await eventually(
                lambda: partitions_of(settings.require_kafka(), [conversations]), bool, timeout=60
            )
            await log.append_many(call_events("acme", 3))

        async def projected() -> Any:
            try:
                return await get_conversation(db, "acme", "conv-2")
            except Exception:  # the views appear when the runner registers
                return None

        conversation = await eventually(
            projected, lambda c: c is not None and c["status"] == "ended"
        )
        assert conversation["turn_count"] == 4

        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
        assert (
            'memstream_projection_events_total{outcome="applied",projection="conversations"'
            in metrics
        )
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, stderr.decode()[-3000:]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
