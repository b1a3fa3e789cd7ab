"""PII redaction: what is replaced before text reaches a remote LLM or embedding API.

:func:`redact` replaces, in this order (a card number is also a long digit run a phone
matcher might take):

- payment card numbers: 13 to 19 digits, optionally grouped by spaces or dashes, that
  pass the Luhn check (so order numbers and other long digit runs stay) -> ``[card]``;
- email addresses, written ("jo@example.com") or as speech-to-text spells them out
  ("jess dot alvarez at gmail dot com") -> ``[email]``;
- phone numbers, as Google's libphonenumber (``phonenumbers``) finds them: international
  numbers in any format ("+44 20 7946 0958"), national ones for the default region
  ("(415) 555-0132") -> ``[phone]``.

Redaction errs towards replacing: a memory that loses a number is better than a number
that leaves the process. What it does not catch: numbers spelled out in words
("five five five, zero one..."), which speech-to-text sometimes produces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers

__all__ = ["CARD", "EMAIL", "PHONE", "luhn_valid", "redact"]

CARD = "[card]"
EMAIL = "[email]"
PHONE = "[phone]"

# Digits in groups separated by single spaces or dashes; the length is checked after.
_CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)

# What speech-to-text makes of an address: "<name> [dot <part>]... at <domain> dot <tld>".
_SPOKEN_EMAIL = re.compile(
    r"\b[a-z0-9][a-z0-9._-]*(?:\s+dot\s+[a-z0-9_-]+)*\s+at\s+[a-z0-9-]+"
    r"(?:\s+dot\s+[a-z0-9-]+)*\s+dot\s+"
    r"(?:com|org|net|edu|gov|io|co|us|uk|ca|de|fr|es|it|nl|au|in|info|me)\b",
    re.IGNORECASE,
)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (what every card number passes)."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def redact(text: str, region: str = "US") -> str:
    """``text`` with card numbers, emails and phone numbers replaced by placeholders.

    ``region`` is the country whose national phone formats are recognised without a
    ``+`` prefix (ISO 3166 alpha-2).
    """
    text = _CARD_CANDIDATE.sub(_card, text)
    text = _EMAIL.sub(EMAIL, text)
    text = _SPOKEN_EMAIL.sub(EMAIL, text)
    return _replace(text, _phones(text, region), PHONE)


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return CARD
    return match.group()


def _phones(text: str, region: str) -> Iterator[tuple[int, int]]:
    # POSSIBLE rather than VALID: a number not allocated today is still someone's to
    # keep private, and a false positive only costs a placeholder.
    for match in phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.POSSIBLE
    ):
        yield match.start, match.end


def _replace(text: str, spans: Iterator[tuple[int, int]], placeholder: str) -> str:
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(placeholder)
        last = end
    parts.append(text[last:])
    return "".join(parts)
