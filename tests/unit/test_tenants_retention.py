"""A tenant's transcript retention as written on the command line (`parse_retention`)."""

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
    ],
)
def test_hours_days_weeks_or_off_are_accepted(text: str, expected: timedelta | None) -> None:
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
        ("90", "hours, days or weeks"),
        ("1y", "hours, days or weeks"),
        ("30m", "hours, days or weeks"),
        ("1.5d", "hours, days or weeks"),
        ("90 d", "hours, days or weeks"),
        ("+90d", "hours, days or weeks"),
        ("\u0669\u0660d", "hours, days or weeks"),  # Arabic-Indic digits
        ("", "hours, days or weeks"),
        ("never", "hours, days or weeks"),
    ],
)
def test_anything_else_is_refused_with_a_clear_message(text: str, says: str) -> None:
    with pytest.raises(TenantError) as refused:
        parse_retention(text)
    assert refused.value.code == "invalid_retention"
    assert says in str(refused.value)


@given(st.integers(min_value=1, max_value=36525), st.sampled_from(["h", "d", "w"]))
def test_a_number_of_units_is_that_many_units_or_refused_beyond_100_years(
    amount: int, unit: str
) -> None:
    expected = (
        amount * {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}[unit]
    )
    if expected > MAX_RETENTION:
        with pytest.raises(TenantError):
            parse_retention(f"{amount}{unit}")
    else:
        assert parse_retention(f"{amount}{unit}") == expected
