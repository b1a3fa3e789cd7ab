"""Settings: read from MEMSTREAM_* once, validated, handed to child processes intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import ConfigurationError, Settings


def test_defaults_leave_endpoints_to_the_local_launcher() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap is None and settings.database_url is None
    assert settings.topic_prefix == "memstream" and settings.partitions == 6


def test_environment_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "MEMSTREAM_KAFKA_BOOTSTRAP": "broker:9092",
            "MEMSTREAM_DATABASE_URL": "postgresql://db/memstream",
            "MEMSTREAM_PARTITIONS": "12",
            "MEMSTREAM_TOPIC_PREFIX": "prod.eu",
            "MEMSTREAM_HOME": "/var/lib/memstream",
            "MEMSTREAM_LOG_LEVEL": "debug",
        }
    )
    assert settings.kafka_bootstrap == "broker:9092"
    assert settings.database_url == "postgresql://db/memstream"
    assert settings.partitions == 12
    assert settings.topic_prefix == "prod.eu"
    assert settings.home == Path("/var/lib/memstream")
    assert settings.log_level == "DEBUG"


def test_to_env_round_trips_through_from_env() -> None:
    settings = Settings(
        kafka_bootstrap="b:1", database_url="postgresql://x/y", partitions=3, batch_max_records=25
    )
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MEMSTREAM_PARTITIONS", "many"),
        ("MEMSTREAM_PARTITIONS", "0"),
        ("MEMSTREAM_TOPIC_PREFIX", "bad prefix"),
        ("MEMSTREAM_POISON_RETRIES", "-1"),
    ],
)
def test_invalid_values_are_configuration_errors_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({name: value})
    assert name.removeprefix("MEMSTREAM_").split("_")[0] in str(raised.value).upper()


def test_missing_endpoints_say_how_to_get_them() -> None:
    with pytest.raises(ConfigurationError, match="make infra-up"):
        Settings().require_kafka()
    with pytest.raises(ConfigurationError, match="MEMSTREAM_DATABASE_URL"):
        Settings().require_database()
