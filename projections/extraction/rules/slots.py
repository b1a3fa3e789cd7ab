"""Builders the patterns share: a template filled with the capture, a slot's value.

A slot (a memory's ``key``) holds one value: ``_slot`` turns what was said for a common
slot (name, date of birth, email, also spelled out, phone, address, home city,
insurance) into an identity fact, or into nothing when it is no plausible value. The
agent's questions and ``analysis.data_collected`` fill the same slots (``agent``).
"""

from __future__ import annotations

import re
from typing import Any

from projections.extraction.rules.normalise import (
    _HAS_NUMBER,
    _MONTHS,
    _WEEKDAYS,
    _capitalise,
    _phrase,
    _trim,
    _words,
)
from projections.extraction.rules.rule import (
    IDENTITY,
    LIFE,
    _Build,
    _BuildOne,
    _Context,
    _Found,
    _Spec,
)

# ------------------------------------------------------------------------ builders


def _fmt(template: str, spec: _Spec, key: str | None = None, **kwargs: Any) -> _BuildOne:
    """A builder filling ``template``'s ``{x}`` with the third-person capture ``x``."""

    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        x = _phrase(match["x"])
        if x is None:
            return None
        return _Found(_capitalise(template.format(x=x)), spec, key, **kwargs)

    return build


# Words that end a name ("my name is Maria and I...") or show it was no name at all.
_NAME_STOP = frozenset(
    _words(
        """
    and but so or i i'm im calling from here speaking with the a an um uh just my is
    it please back later tomorrow today when if at on in to for about sorry not good
    fine okay ok well new looking trying hoping wondering also still really very
    glad happy
    """
    )
)
_NAME_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_TITLES = frozenset({"Dr", "Mr", "Mrs", "Ms"})


def _name(text: str | None, *, strict: bool) -> str | None:
    """A person's name from the start of ``text``; ``strict`` wants it capitalised."""
    if text is None:
        return None
    words: list[str] = []
    for raw in _trim(text).split():
        word = raw.strip(",.")
        if word in _TITLES and raw.endswith(".") and not words:
            words.append(word + ".")  # "Mr. Hadley": the title's full stop ends nothing
            continue
        possessive = word.endswith("'s") and len(words) > 0
        word = word.removesuffix("'s") if possessive else word
        if word.lower() in _NAME_STOP or not _NAME_WORD.fullmatch(word):
            break
        if strict and not word[0].isupper():
            break
        words.append(word)
        if raw.endswith((",", ".")) or possessive:
            break
    if not words or len(words) > 4:
        return None
    name = " ".join(words)
    return name.title() if name.islower() else name


_NUMBER_WORDS = _words(
    """
    first second third fourth fifth sixth seventh eighth ninth tenth eleventh
    twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth
    nineteenth twentieth thirtieth twenty thirty nineteen
    """
)
_DATE_LIKE = re.compile(r"\d|\b(?:" + "|".join((*_MONTHS, *_NUMBER_WORDS)) + r")\b", re.I)
_MONTH_WORD = re.compile(r"\b(?:" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)
_SPOKEN_EMAIL = (
    (re.compile(r"\s+(?:dot|period)\s+", re.I), "."),
    (re.compile(r"\s+at\s+", re.I), "@"),
    (re.compile(r"\s+underscore\s+", re.I), "_"),
    (re.compile(r"\s+(?:dash|hyphen)\s+", re.I), "-"),
    (re.compile(r"\s+"), ""),
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGIT = re.compile(r"\d")
_DIGIT_WORD = re.compile(r"\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)\b", re.I)
_LETTER = re.compile(r"[A-Za-z]")


# A word that makes a phrase a place (an address said in words has one; delivery).
_PLACE_WORD = re.compile(
    r"\b(?:place|house|home|office|work|apartment|apt|building|address|street|st|avenue|ave|"
    r"road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|condo|unit|suite|p\.?o\.? box|"
    r"po box)\b",
    re.IGNORECASE,
)


def _email(text: str) -> str | None:
    """An email address, also when spelled out ("maria dot lopez at gmail dot com")."""
    text = text.lower()
    for pattern, replacement in _SPOKEN_EMAIL:
        text = pattern.sub(replacement, text)
    return text if _EMAIL.fullmatch(text) else None


def _slot(slot: str, raw: str | None, *, strict: bool = False) -> _Found | None:
    """An identity fact for a common slot, or None when ``raw`` is no plausible value."""
    if raw is None:
        return None
    text = _trim(raw)
    if not text or len(text) > 100:
        return None
    words = len(text.split())
    if slot == "name":
        name = _name(text, strict=strict)
        return _Found(f"Name: {name}", IDENTITY, "name") if name else None
    if slot == "date_of_birth":
        ok = words <= 6 and bool(_DATE_LIKE.search(text))
        text = _MONTH_WORD.sub(lambda m: m[0].capitalize(), text)
        return _Found(f"Date of birth: {text}", IDENTITY, "date_of_birth") if ok else None
    if slot == "email":
        email = _email(text)
        return _Found(f"Email: {email}", IDENTITY, "email") if email else None
    if slot == "phone":
        digits = len(_DIGIT.findall(text)) + len(_DIGIT_WORD.findall(text))
        ok = digits >= 7 and len(text) <= 60
        return _Found(f"Phone number: {text}", IDENTITY, "phone") if ok else None
    if slot == "address":
        # "2140 Alder Street", or said in words: "forty two Elm Street".
        said = bool(_HAS_NUMBER.search(text) and _PLACE_WORD.search(text))
        ok = words <= 14 and bool(_LETTER.search(text)) and (bool(_DIGIT.search(text)) or said)
        return _Found(f"Address: {text}", IDENTITY, "address") if ok else None
    if slot == "home_city":
        ok = words <= 4 and not _DIGIT.search(text) and text.lower() not in _NAME_STOP
        return _Found(f"Lives in {_capitalise(text)}", LIFE, "home_city") if ok else None
    if slot == "insurance":
        ok = words <= 6 and text.lower() not in {"no", "none", "nope"}
        return _Found(f"Insurance: {text}", IDENTITY, "insurance") if ok else None
    return None


def _slot_rule(slot: str, *, strict: bool = False) -> _Build:
    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        return _slot(slot, match["x"], strict=strict)

    return build


def _first_turn_name(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "This is Maria" / "I'm Maria" name the caller only when they introduce
    # themselves; later in the call "this is X" is about anything.
    first = match["x"].split(" ", 1)[0].lower()
    if not ctx.first_user_turn or first in _NOT_NAMES or first in _WEEKDAYS or first in _MONTHS:
        return None
    return _slot("name", match["x"], strict=True)


_NOT_NAMES = frozenset(
    _words(
        """
    sorry good fine okay ok great calling just not here trying looking hoping new
    glad happy so really allergic nervous worried the a an
    """
    )
)
