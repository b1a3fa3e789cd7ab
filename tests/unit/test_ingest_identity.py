"""Who a conversation is about: user id first, then the E.164 phone number, else anonymous."""

from __future__ import annotations

import pytest

from services.identity import anonymous_subject, caller_subject, normalise_phone


@pytest.mark.parametrize(
    "raw",
    ["+14155550123", "+1 415-555-0123", "+1 (415) 555-0123", "  +1.415.555.0123  "],
)
def test_numbers_with_a_country_code_are_normalised_to_e164(raw: str) -> None:
    assert normalise_phone(raw) == "+14155550123"


def test_a_national_number_needs_a_default_region() -> None:
    assert normalise_phone("4155550123") is None
    assert normalise_phone("14155550123") is None
    assert normalise_phone("(415) 555-0123", "US") == "+14155550123"
    assert normalise_phone("14155550123", "us") == "+14155550123"
    assert normalise_phone("020 7946 0958", "GB") == "+442079460958"


def test_a_region_does_not_override_an_explicit_country_code() -> None:
    assert normalise_phone("+44 20 7946 0958", "US") == "+442079460958"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "anonymous",
        "Restricted",
        "sip:caller@pbx.example.com",
        "+1 555-010-0000",  # 555 is not an assigned area code
        "+1 111 111 1111",
        "+266696687",  # a placeholder some carriers send for withheld numbers
        "+1 415 555 01",
    ],
)
def test_what_is_not_a_valid_number_gives_none(raw: str | None) -> None:
    assert normalise_phone(raw, "US") is None


def test_the_user_id_wins_and_the_number_is_still_returned() -> None:
    subject, phone = caller_subject(
        "acme", user_id=" usr_4471 ", phone="+1 415 555 0123", conversation_id="conv_1"
    )
    assert subject == "acme/usr_4471"
    assert phone == "+14155550123"


@pytest.mark.parametrize("user_id", [None, "", "   "])
def test_without_a_user_id_the_phone_number_is_the_subject(user_id: str | None) -> None:
    subject, phone = caller_subject(
        "acme", user_id=user_id, phone="+1 (415) 555-0123", conversation_id="conv_1"
    )
    assert (subject, phone) == ("acme/+14155550123", "+14155550123")


def test_a_national_number_uses_the_default_region() -> None:
    subject, phone = caller_subject(
        "acme", user_id=None, phone="415 555 0123", conversation_id="c", default_region="US"
    )
    assert (subject, phone) == ("acme/+14155550123", "+14155550123")


@pytest.mark.parametrize("phone", [None, "", "anonymous", "+1 555-010-0000", "4155550123"])
def test_an_unidentified_caller_gets_a_subject_of_its_own_per_conversation(
    phone: str | None,
) -> None:
    first = caller_subject("acme", user_id=None, phone=phone, conversation_id="conv_1")
    second = caller_subject("acme", user_id=None, phone=phone, conversation_id="conv_2")
    assert first == ("acme/anonymous-conv_1", None)
    assert second == ("acme/anonymous-conv_2", None)
    assert anonymous_subject("acme", "conv_1") == "acme/anonymous-conv_1"


def test_a_user_id_with_a_control_character_is_refused() -> None:
    with pytest.raises(ValueError, match="control characters"):
        caller_subject("acme", user_id="usr\n1", phone=None, conversation_id="conv_1")
