"""Settings: read from MEMSTREAM_* once, validated, handed to child processes intact."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from infra.settings import InfraSettings
from projections.settings import ProjectionSettings
from services.settings import Settings
from streams import ConfigurationError, StreamsSettings


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


def test_provider_settings_are_read_and_default_to_the_offline_path() -> None:
    assert (Settings().llm_model, Settings().embedding_model) == ("", "")
    settings = Settings.from_env(
        {
            "MEMSTREAM_OPENAI_BASE_URL": "http://127.0.0.1:8000/v1",
            "MEMSTREAM_OPENAI_API_KEY": "sk-test-secret",
            "MEMSTREAM_LLM_MODEL": "gpt-4o-mini",
            "MEMSTREAM_EMBEDDING_MODEL": "text-embedding-3-small",
            "MEMSTREAM_PROVIDER_TIMEOUT_S": "2.5",
            "MEMSTREAM_PROVIDER_RETRIES": "5",
            "MEMSTREAM_BREAKER_FAILURES": "2",
            "MEMSTREAM_BREAKER_RESET_S": "0.5",
            "MEMSTREAM_PROVIDER_CONCURRENCY": "8",
        }
    )
    assert settings.openai_base_url == "http://127.0.0.1:8000/v1"
    assert settings.openai_api_key == "sk-test-secret"
    assert (settings.llm_model, settings.embedding_model) == (
        "gpt-4o-mini",
        "text-embedding-3-small",
    )
    assert (settings.provider_timeout_s, settings.provider_retries) == (2.5, 5)
    assert (settings.breaker_failures, settings.breaker_reset_s) == (2, 0.5)
    assert settings.provider_concurrency == 8
    assert Settings.from_env(settings.to_env()) == settings


def test_the_api_key_is_never_in_the_repr() -> None:
    settings = Settings(openai_api_key="sk-test-secret", llm_model="gpt-4o-mini")
    assert "sk-test-secret" not in repr(settings)
    assert "sk-test-secret" not in str(settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MEMSTREAM_PROVIDER_TIMEOUT_S": "soon"}, "PROVIDER_TIMEOUT_S"),
        ({"MEMSTREAM_PROVIDER_TIMEOUT_S": "0"}, "PROVIDER_TIMEOUT_S"),
        ({"MEMSTREAM_PROVIDER_RETRIES": "-1"}, "PROVIDER_RETRIES"),
        ({"MEMSTREAM_BREAKER_FAILURES": "0"}, "BREAKER_FAILURES"),
        ({"MEMSTREAM_PROVIDER_CONCURRENCY": "0"}, "PROVIDER_CONCURRENCY"),
        ({"MEMSTREAM_BREAKER_RESET_S": "-3"}, "BREAKER_RESET_S"),
        ({"MEMSTREAM_OPENAI_BASE_URL": "localhost:8000"}, "OPENAI_BASE_URL"),
        ({"MEMSTREAM_LLM_MODEL": "gpt-4o-mini"}, "OPENAI_API_KEY"),
        ({"MEMSTREAM_EMBEDDING_MODEL": "text-embedding-3-small"}, "OPENAI_API_KEY"),
    ],
)
def test_invalid_provider_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"MEMSTREAM_{named}"):
        Settings.from_env(env)


@pytest.mark.parametrize("model", ["local/all-minilm-l6-v2-dq8", "local/all-minilm-l6-v2-int8"])
def test_a_local_embedding_model_needs_no_key(model: str) -> None:
    assert Settings.from_env({"MEMSTREAM_EMBEDDING_MODEL": model}).embedding_model == model


def test_the_summary_debounce_is_read_handed_on_and_never_negative() -> None:
    assert Settings.from_env({}).summary_debounce_s == 30.0
    settings = Settings.from_env({"MEMSTREAM_SUMMARY_DEBOUNCE_S": "2.5"})
    assert settings.summary_debounce_s == 2.5
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env({"MEMSTREAM_SUMMARY_DEBOUNCE_S": "0"}).summary_debounce_s == 0
    for bad in ("-1", "later"):
        with pytest.raises(ConfigurationError, match="MEMSTREAM_SUMMARY_DEBOUNCE_S"):
            Settings.from_env({"MEMSTREAM_SUMMARY_DEBOUNCE_S": bad})


def test_kafka_security_settings_reach_every_client_and_hide_the_password() -> None:
    assert Settings.from_env({}).kafka_options() == {"security_protocol": "PLAINTEXT"}
    env = {
        "MEMSTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "MEMSTREAM_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "MEMSTREAM_KAFKA_SASL_USERNAME": "memstream",
        "MEMSTREAM_KAFKA_SASL_PASSWORD": "kafka-secret",
    }
    settings = Settings.from_env(env)
    options = settings.kafka_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "memstream",
        "kafka-secret",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "kafka-secret" not in repr(settings)
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    "env",
    [
        {"MEMSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"},
        {"MEMSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
        {
            "MEMSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "MEMSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI",
            "MEMSTREAM_KAFKA_SASL_USERNAME": "u",
            "MEMSTREAM_KAFKA_SASL_PASSWORD": "p",
        },
    ],
)
def test_invalid_kafka_security_settings_name_the_variables(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="MEMSTREAM_KAFKA_SECURITY_PROTOCOL"):
        Settings.from_env(env)


def test_metrics_host_and_log_hash_key_are_read_handed_on_and_the_key_never_shown() -> None:
    defaults = Settings.from_env({})
    assert defaults.metrics_host == "127.0.0.1" and defaults.log_hash_key is None
    settings = Settings.from_env(
        {"MEMSTREAM_METRICS_HOST": "0.0.0.0", "MEMSTREAM_LOG_HASH_KEY": "log-key-secret"}
    )
    assert settings.metrics_host == "0.0.0.0" and settings.log_hash_key == "log-key-secret"
    assert Settings.from_env(settings.to_env()) == settings
    assert "log-key-secret" not in repr(settings)


def _readme_variables() -> set[str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`(MEMSTREAM_[A-Z0-9_]+)`", cell)}


def test_the_readme_table_lists_every_variable_and_only_those() -> None:
    assert _readme_variables() == set(Settings.variables())


def _other_than_default(name: str, value: object) -> str:
    """An env value for field `name` unlike its default, valid on its own."""
    if isinstance(value, bool):
        return "off" if value else "on"
    if isinstance(value, int | float):
        return str(value + 7)
    if name == "kafka_security_protocol":
        return "SSL"
    if name == "openai_base_url":
        return "http://127.0.0.1:9/v1"
    if name == "log_format":
        return "text"
    if name == "log_level":
        return "WARNING"
    if name in ("home", "master_key_file"):
        return f"/tmp/memstream-{name}"
    return f"{name}-value"


def test_every_field_is_read_and_handed_on_under_its_own_name() -> None:
    defaults = Settings()
    env = {
        f"MEMSTREAM_{name.upper()}": _other_than_default(name, getattr(defaults, name))
        for name in Settings.model_fields
    }
    settings = Settings.from_env(env)
    assert all(getattr(settings, name) != getattr(defaults, name) for name in Settings.model_fields)
    assert Settings.from_env(settings.to_env()) == settings
    assert set(settings.to_env()) == set(Settings.variables())


def test_each_layer_owns_its_section_and_the_settings_combine_them() -> None:
    sections = [StreamsSettings, InfraSettings, ProjectionSettings]
    for section in sections:
        assert issubclass(Settings, section)
    assert "llm_model" not in StreamsSettings.model_fields
    assert "query_rate_limit" not in ProjectionSettings.model_fields
    assert "local_kafka_port" in InfraSettings.model_fields
    # A section is read from the same variables as the whole.
    env = {"MEMSTREAM_LLM_MODEL": "m", "MEMSTREAM_OPENAI_API_KEY": "k", "MEMSTREAM_PARTITIONS": "2"}
    assert ProjectionSettings.from_env(env).llm_model == Settings.from_env(env).llm_model == "m"
    assert StreamsSettings.from_env(env).partitions == 2


def test_settings_built_in_code_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTREAM_PARTITIONS", "9")
    assert Settings().partitions == 6
    assert Settings.from_env().partitions == 9


def test_replace_validates_and_keeps_the_type() -> None:
    settings = Settings(partitions=3)
    changed = settings.replace(llm_model="m", openai_api_key="k")
    assert type(changed) is Settings and changed.partitions == 3 and changed.llm_model == "m"
    with pytest.raises(ConfigurationError, match="MEMSTREAM_PARTITIONS"):
        settings.replace(partitions=0)
    with pytest.raises(ConfigurationError, match="MEMSTREAM_OPENAI_API_KEY"):
        settings.replace(llm_model="m")


def test_blank_values_are_unset_and_words_are_normalised() -> None:
    settings = Settings.from_env(
        {
            "MEMSTREAM_TOPIC_PREFIX": "  ",
            "MEMSTREAM_KAFKA_BOOTSTRAP": " b:1 ",
            "MEMSTREAM_LOG_FORMAT": "TEXT",
            "MEMSTREAM_KAFKA_SECURITY_PROTOCOL": "ssl",
        }
    )
    assert settings.topic_prefix == "memstream" and settings.kafka_bootstrap == "b:1"
    assert (settings.log_format, settings.kafka_security_protocol) == ("text", "SSL")


def test_an_invalid_secret_is_named_but_never_shown() -> None:
    with pytest.raises(ConfigurationError, match="MEMSTREAM_MASTER_KEY") as raised:
        Settings(master_key=["not-a-string", "secret-value"])  # type: ignore[arg-type]
    assert "secret-value" not in str(raised.value)
