"""A tenant's transcript or memory retention as written on the command line
(`parse_retention`, `memstream tenants update`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tenants import MAX_RETENTION, MIN_RETENTION, TenantError, parse_retention


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("36h", timedelta(hours=36)),
        ("2w", timedelta(weeks=2)),
        ("1h", MIN_RETENTION),
        ("36525d", MAX_RETENTION),
        ("876600h", MAX_RETENTION),
        (" 90D ", timedelta(days=90)),
        ("007d", timedelta(days=7)),
        ("off", None),
        ("none", None),
        ("forever", None),
        ("Off", None),
        ("1y", timedelta(days=365)),
        ("52w", timedelta(weeks=52)),
        ("365d", timedelta(days=365)),
        ("100y", timedelta(days=36500)),
    ],
)
def test_hours_days_weeks_years_or_off_are_accepted(text: str, expected: timedelta | None) -> None:
    assert parse_retention(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0d", "at least 1 hour"),
        ("0h", "at least 1 hour"),
        ("-5d", "at least 1 hour"),
        ("-0w", "at least 1 hour"),
        ("36526d", "at most 100 years"),
        ("5218w", "at most 100 years"),
        ("9999999999h", "at most 100 years"),
        ("9" * 5000 + "d", "at most 100 years"),  # not handed to int(), nor a timedelta
        ("90", "hours, days, weeks or years"),
        ("1.5y", "hours, days, weeks or years"),
        ("1 y", "hours, days, weeks or years"),
        ("101y", "at most 100 years"),
        ("30m", "hours, days, weeks or years"),
        ("1.5d", "hours, days, weeks or years"),
        ("90 d", "hours, days, weeks or years"),
        ("+90d", "hours, days, weeks or years"),
        ("\u0669\u0660d", "hours, days, weeks or years"),  # Arabic-Indic digits
        ("", "hours, days, weeks or years"),
        ("never", "hours, days, weeks or years"),
    ],
)
def test_anything_else_is_refused_with_a_clear_message(text: str, says: str) -> None:
    with pytest.raises(TenantError) as refused:
        parse_retention(text)
    assert refused.value.code == "invalid_retention"
    assert says in str(refused.value)


@given(st.integers(min_value=1, max_value=36525), st.sampled_from(["h", "d", "w", "y"]))
def test_a_number_of_units_is_that_many_units_or_refused_beyond_100_years(
    amount: int, unit: str
) -> None:
    expected = (
        amount
        * {
            "h": timedelta(hours=1),
            "d": timedelta(days=1),
            "w": timedelta(weeks=1),
            "y": timedelta(days=365),
        }[unit]
    )
    if expected > MAX_RETENTION:
        with pytest.raises(TenantError):
            parse_retention(f"{amount}{unit}")
    else:
        assert parse_retention(f"{amount}{unit}") == expected


@pytest.mark.parametrize("what", ["transcript", "memory"])
def test_the_message_names_the_retention_and_what_it_keeps(what: str) -> None:
    with pytest.raises(TenantError) as refused:
        parse_retention("never", what)
    kept = {"transcript": "transcripts", "memory": "memories"}[what]
    assert f"a {what} retention" in str(refused.value)
    assert f"keep {kept} for ever" in str(refused.value)
    assert parse_retention("1y", what) == timedelta(days=365)


def test_the_cli_refuses_a_bad_or_missing_duration_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.cli.__main__ import main

    # No database is reachable at this address: a refusal before connecting needs none.
    env = {"MEMSTREAM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert main(["tenants", "update", "acme", "--memory-retention", "1.5y"]) == 2
        assert "a memory retention is a number of hours" in capsys.readouterr().err
        assert main(["tenants", "update", "acme"]) == 2
        assert "--memory-retention" in capsys.readouterr().err
