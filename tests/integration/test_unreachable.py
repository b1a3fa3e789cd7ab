"""Broker or database unreachable: a clear error, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from projections.conversations import ConversationsProjection
from services.settings import Settings
from streams import BrokerUnavailable, DatabaseUnavailable, EventLog, ProjectionRunner
from streams.topics import ensure_topics
from tests.helpers import call_events, closed_port, scalar


async def test_appending_to_an_unreachable_broker_says_so(settings: Settings) -> None:
    address = f"127.0.0.1:{closed_port()}"
    log = EventLog(settings.replace(kafka_bootstrap=address), append_timeout=3)
    with pytest.raises(BrokerUnavailable, match=address):
        await log.start()
    with pytest.raises(BrokerUnavailable):
        await log.append(call_events("acme", 1)[0])


async def test_creating_topics_on_an_unreachable_broker_says_so(settings: Settings) -> None:
    with pytest.raises(BrokerUnavailable, match="unreachable"):
        await ensure_topics(settings.replace(kafka_bootstrap=f"127.0.0.1:{closed_port()}"))


async def test_a_runner_without_its_database_fails_clearly_and_writes_nothing(
    topics: Settings, db: Any
) -> None:
    bad = topics.replace(database_url=f"postgresql://postgres:secret@127.0.0.1:{closed_port()}/x")
    runner = ProjectionRunner(ConversationsProjection(), bad)
    with pytest.raises(DatabaseUnavailable) as raised:
        await runner.start()
    assert "secret" not in str(raised.value)  # passwords never reach logs
    assert "unreachable" in str(raised.value)


async def test_a_runner_without_its_broker_fails_clearly_and_projects_nothing(
    settings: Settings, db: Any
) -> None:
    bad = settings.replace(kafka_bootstrap=f"127.0.0.1:{closed_port()}")
    runner = ProjectionRunner(ConversationsProjection(), bad)
    with pytest.raises(BrokerUnavailable):
        await runner.start()
    await runner.close()
    assert await scalar(db, "SELECT count(*) FROM memstream.checkpoints") == 0


def test_the_cli_exits_3_with_a_message_when_the_broker_is_unreachable(settings: Settings) -> None:
    env = {
        **os.environ,
        **settings.to_env(),
        "MEMSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
        "MEMSTREAM_METRICS_PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "projections", "run", "conversations"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "unreachable" in result.stderr


def test_the_cli_exits_2_on_a_bad_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "infra", "status"],
        env={**os.environ, "MEMSTREAM_PARTITIONS": "many"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "MEMSTREAM_PARTITIONS" in result.stderr
