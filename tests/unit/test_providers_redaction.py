"""PII redaction: phones (national and international), emails and Luhn-valid card numbers
are replaced by typed placeholders; other numbers are left alone."""

from __future__ import annotations

import pytest

from projections.providers.redaction import luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Call me at (415) 555-0132 tomorrow", "Call me at [phone] tomorrow"),
        ("my number is 415.555.0132", "my number is [phone]"),
        ("it's +1 415 555 0132", "it's [phone]"),
        ("UK: +44 20 7946 0958, thanks", "UK: [phone], thanks"),
        ("reach me on +33 6 12 34 56 78", "reach me on [phone]"),
        ("Berlin office +49 30 901820", "Berlin office [phone]"),
        ("my cell in India is +91 98765 43210", "my cell in India is [phone]"),
        ("Sydney +61 2 9374 4000 works", "Sydney [phone] works"),
    ],
)
def test_phone_numbers_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email me at jo.doe+dentist@example.co.uk.", "email me at [email]."),
        ("it's DANIEL_O@Mail.Example.com", "it's [email]"),
        ("a@b.io and c.d@e-f.org", "[email] and [email]"),
    ],
)
def test_emails_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 exp 04/29", "card [card] exp 04/29"),
        ("4242-4242-4242-4242", "[card]"),
        ("amex 378282246310005 please", "amex [card] please"),
        ("mastercard 5555555555554444", "mastercard [card]"),
    ],
)
def test_card_numbers_that_pass_luhn_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # Card-shaped but failing the Luhn check: an order number, not a card.
        "order 1234 5678 9012 3456 shipped",
        "tracking 4111111111111112",
        # Dates, times, years, amounts, ages, short codes and zip codes.
        "Born on 1985-03-14, appointment at 3:30 on 03/02/2026",
        "I paid $1,250.00 in 2024 and I'm 42",
        "my zip is 94110 and the code is 1234",
        "Allergic to penicillin",
    ],
)
def test_text_without_pii_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_everything_in_one_turn_is_redacted_and_nothing_else_changes() -> None:
    text = (
        "Sure, I'm Dana, it's dana.k@example.com, cell (415) 555-0132, and charge "
        "the Visa 4111-1111-1111-1111 for the cleaning on March 3."
    )
    assert redact(text) == (
        "Sure, I'm Dana, it's [email], cell [phone], and charge "
        "the Visa [card] for the cleaning on March 3."
    )


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("378282246310005", True),
        ("79927398713", True),
        ("4111111111111112", False),
        ("1234567890123456", False),
        ("12a4", False),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email is jess dot alvarez at gmail dot com", "email is [email]"),
        ("dana at example dot co dot uk, thanks", "[email], thanks"),
    ],
)
def test_emails_spelled_out_by_speech_to_text_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_at_and_dot_in_ordinary_speech_are_not_an_email() -> None:
    for text in ["I am at work today", "we met at the park. Dot said hi"]:
        assert redact(text) == text
