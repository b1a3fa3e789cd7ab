"""People and pets the caller speaks of, and what is said of them in passing.

People and pets by name ("my wife Linda", "her caregiver, Rosa, picks up"; a later
"she", "his name" or "Max" means them), whom the caller is calling for ("I'm calling
for my dad"), and what a clause says besides what its rule made of it
(``_mentions``): names said in passing, budgets, street addresses said anywhere
("It's eleven eighty Birchwood Lane now").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from projections.extraction.rules.normalise import (
    _HAS_NUMBER,
    _NUM_WORD,
    _NUMBER,
    _PROPER_WORDS,
    _capitalise,
    _phrase,
    _trim,
    _words,
)
from projections.extraction.rules.patterns import (
    _KIN,
    _PETS,
    _article,
    _expand_contraction,
    _meet,
)
from projections.extraction.rules.rule import (
    HEALTH,
    IDENTITY,
    LIFE,
    PREFERENCE,
    _Context,
    _Found,
)
from projections.extraction.rules.slots import (
    _DIGIT,
    _name,
)

# -- people and pets

_PET_WORD = re.compile(rf"(?:{_PETS})", re.IGNORECASE)
# A capitalised word that is no name after "my wife": "my wife And I" never happens, but
# "my doctor Dr. Shah", "my son Monday" (ASR) do.
_NOT_A_NAME = frozenset(
    {"I", "And", "The", "But", "So", "Or", "Dr", "Mr", "Mrs", "Ms", "Doctor", "Okay", "OK"}
    | _PROPER_WORDS
)
_MENTION = re.compile(
    r"\b(?P<own>my|our|her|his) (?:(?:late|little|older|younger|oldest|youngest|eldest|baby|"
    rf"new|old|sweet|grown|adult|teenage|senior|rescue) )?(?P<rel>{_KIN}),? "
    r"(?P<n>(?:(?:Dr|Mr|Mrs|Ms)\.? )?(?-i:[A-Z])[a-z]+(?:-(?-i:[A-Z])[a-z]+)?)\b",
    re.IGNORECASE,
)
_NAMED = re.compile(
    rf"\b(?:a|an|one|my|our)(?: [\w-]+)? (?P<rel>{_KIN}) (?:named|called) "
    r"(?P<n>(?-i:[A-Z])[a-z]+(?:-(?-i:[A-Z])[a-z]+)?)\b",
    re.IGNORECASE,
)
_KEEP_UNDER = re.compile(
    r"\bkeep (?:it|the (?:cost|total|price)|things|costs) (?P<x>(?:under|below|within|around|"
    rf"to|at) (?:about |around |like )?{_NUMBER}(?: (?:dollars|bucks|euros|pounds|k|grand))?"
    r"(?: (?:for|a|per) [\w ]{1,20})?)",
    re.IGNORECASE,
)
_PET_NAMED = re.compile(
    rf"\b(?:a|an|one) (?:[\w-]+ ){{0,2}}?(?P<rel>{_PETS}), (?P<n>(?-i:[A-Z])[a-z]+)\b(?!')",
    re.IGNORECASE,
)
# "my wife" said without her name: she is whom a later "she" means.
_RELATIVE = re.compile(rf"\b(?:my|our) (?P<rel>{_KIN})\b(?!'s name)", re.IGNORECASE)
_BUDGET = re.compile(
    r"\bbudget(?P<f> for (?:the |a |our |my )?[\w ]{1,20}?)?,?(?:'s| is| of| will be| would be)?"
    r"(?P<q>(?: (?:around|about|roughly|maybe|"
    r"under|up to|at most|no more than|somewhere around|max|maximum|probably|approximately|"
    r"close to|between|like|of|is|tops))*) "
    rf"(?P<x>{_NUMBER}(?: (?:and|to|or) {_NUMBER})?(?: (?:dollars|bucks|euros|pounds|k|grand|"
    r"a (?:month|night|week|year|person)|per (?:month|night|week|year|person)|total|all in|"
    r"each|tops|max))*)",
    re.IGNORECASE,
)


# How many turns a "she" may reach back to the person the caller named.
_PRONOUN_REACH = 6


def _referent(pronoun: str, ctx: _Context) -> tuple[str, str, int, str] | None:
    """Whom "she"/"he" ("her"/"his") stands for: the person last spoken of, when recent
    and of that gender, else the one the caller is calling for."""
    pronoun = {"her": "she", "his": "he"}.get(pronoun.lower(), pronoun.lower())
    for person in (ctx.last_person, ctx.behalf):
        if person is None or person[1] not in ("any", pronoun):
            continue
        if person is ctx.behalf or ctx.turn - person[2] <= _PRONOUN_REACH:
            return person
    return None


def _owner(own: str, ctx: _Context) -> str:
    """Whose "her"/"his" is: the relative the caller last spoke of, if it fits."""
    person = _referent(own, ctx)
    return person[0] + "'s" if person else _capitalise(own.lower())


def _mentions(clause: str, ctx: _Context, said: Sequence[_Found]) -> list[_Found]:
    """People and pets named in passing ("my wife Linda and I...") and budgets ("budget
    around three thousand"), besides what the clause's rule made of it."""
    found: list[_Found] = []
    lowered = clause.lower()
    behalf = _BEHALF.search(clause) if "calling" in lowered else None
    if "keep it" in lowered or "keep the" in lowered:
        limit = _KEEP_UNDER.search(clause)
        if limit is not None:
            found.append(_Found(f"Budget is {_trim(limit['x'])}", PREFERENCE, "budget"))
    if "budget" in lowered:
        budget = _BUDGET.search(clause)
        if budget is not None:
            qualifier = " ".join(w for w in budget["q"].split() if w.lower() not in ("of", "is"))
            amount = _trim(f"{qualifier} {budget['x']}")
            purpose = _phrase(budget["f"]) if budget["f"] else None
            if purpose:
                found.append(_Found(f"Budget {purpose} is {amount}", PREFERENCE))
            else:
                found.append(_Found(f"Budget is {amount}", PREFERENCE, "budget"))
    possessive = any(w in lowered for w in ("my ", "our ", "her ", "his "))
    for match in _RELATIVE.finditer(clause) if possessive else ():
        rel = match["rel"].lower()
        known = ctx.last_person is not None and ctx.last_person[0].lower().startswith(rel)
        if not (rel.endswith("s") and rel != "boss") and not known:
            _meet(ctx, rel, None)
    for match in _MENTION.finditer(clause) if possessive else ():
        rel, name = match["rel"].lower(), match["n"]
        if name.split(".")[0] in _NOT_A_NAME and not name.startswith(("Dr", "Mr", "Ms")):
            continue
        if rel.endswith("s") and rel != "boss":
            continue  # "my kids Leo and Mia": said of each elsewhere, if at all
        if match["own"].lower() in ("my", "our"):
            _meet(ctx, rel, name)
            content = f"Has {_article(rel)} {rel} named {name}"
        else:
            content = f"{_owner(match['own'], ctx)} {rel} is named {name}"
        if not any(name in f.content for f in (*said, *found)):
            found.append(_Found(content, LIFE))
    for match in _PET_NAMED.finditer(clause) if ", " in clause else ():
        rel, name = match["rel"].lower(), match["n"]
        if name in _NOT_A_NAME or name in _NOT_A_SUBJECT:
            continue
        _meet(ctx, rel, name)
        if not any(name in f.content for f in (*said, *found)):
            found.append(_Found(f"Has {_article(rel)} {rel} named {name}", LIFE))
    named = "named" in lowered or "called" in lowered
    for match in _NAMED.finditer(clause) if named else ():
        rel, name = match["rel"].lower(), match["n"]
        _meet(ctx, rel, name)
        content = f"Has {_article(rel)} {rel} named {name}"
        if not any(name in f.content for f in (*said, *found)):
            found.append(_Found(content, LIFE))
    if behalf is not None and ctx.last_person is not None:
        ctx.behalf = ctx.last_person
    elif behalf is not None:
        _meet(ctx, behalf["rel"], None)
        ctx.behalf = ctx.last_person
    if ", my " in lowered or ", our " in lowered:
        found += _reverse_mentions(clause, ctx, [*said, *found])
    if _DIGIT.search(clause) or _HAS_NUMBER.search(clause):
        found += _street_mentions(clause, ctx, [*said, *found])
    return found


def _their_relative_says(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Her caregiver, Rosa, picks up her prescriptions" after "my mom has dementia".
    x = _phrase(_expand_contraction(match["x"]))
    if x is None:
        return None
    rel, name = match["rel"].lower(), match["n"]
    owner = _owner(match["own"], ctx)
    ctx.people[name] = f"{owner} {rel} {name}"
    return _Found(f"{owner} {rel} {name} {x}", LIFE)


def _pronoun_says(match: re.Match[str], ctx: _Context) -> _Found | None:
    """ "She has arthritis" about the relative or pet the caller just spoke of."""
    person = _referent(match["p"], ctx)
    if person is None:
        return None
    label = person[0]
    x = _phrase(_expand_contraction(match["x"].lstrip()))
    if x is None or " " not in x:
        return None
    return _Found(f"{label} {x}", LIFE)


def _pronoun_name(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "I have a grandson. His name is Eli."
    person = _referent(match["p"], ctx)
    name = _name(match["n"], strict=True)
    if person is None or not person[3] or name is None:
        return None
    rel = person[3]
    _meet(ctx, rel, name)
    return _Found(f"Has {_article(rel)} {rel} named {name}", LIFE)


def _named_says(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Max has diabetes" once "my dog Max" was said.
    label = ctx.people.get(match["n"])
    x = _phrase(_expand_contraction(match["x"]))
    if label is None or x is None or " " not in x:
        return None
    return _Found(f"{label} {x}", LIFE)


# Whom the caller is calling for: "I'm calling for my dad".
_BEHALF = re.compile(
    rf"\bcalling (?:for|about|on behalf of) (?:my|our) (?:[\w-]+ )?(?P<rel>{_KIN})\b", re.I
)

# -- street addresses said anywhere ("It's eleven eighty Birchwood Lane now")

_STREET_SUFFIX = (
    r"(?:street|st|avenue|ave|road|rd|lane|ln|drive|dr|court|ct|way|boulevard|blvd|place|pl|"
    r"terrace|circle|cir|parkway|pkwy|highway|hwy|trail|square|loop|row|crescent)"
)
_HOUSE_NUMBER = rf"(?:\d+[a-z]?|{_NUM_WORD}(?:[ -](?:{_NUM_WORD}|oh))*)"
_STREET_ADDRESS = re.compile(
    rf"\b(?P<a>{_HOUSE_NUMBER} (?:(?-i:[A-Z])[\w'-]*\.? ){{1,3}}{_STREET_SUFFIX}\b\.?"
    r"(?:,? (?:apartment|apt\.?|unit|suite|number|#) ?(?:\d+\w*|[A-Za-z]\b|"
    rf"{_NUM_WORD}(?: [A-Za-z]\b)?))?(?:,? in (?-i:[A-Z])[\w'-]+(?: (?-i:[A-Z])[\w'-]+)?)?)",
    re.IGNORECASE,
)
_DELIVERY_CONTEXT = re.compile(r"\b(?:deliver\w*|ship\w*|package|parcel|send it)\b", re.I)
_REVERSE_MENTION = re.compile(
    r"(?<![\w,] )(?P<n>(?:(?:Dr|Mr|Mrs|Ms)\.? )?(?-i:[A-Z])[a-z]+(?: (?-i:[A-Z])[a-z]+)?), "
    rf"(?:my|our) (?P<rel>{_KIN})(?=,|$)",
    re.IGNORECASE,
)
_NOT_A_SUBJECT = frozenset(
    _words("She He It That This There They We You Everyone Everything Nobody Someone Who What")
)
_GREETING_WORDS = frozenset(_words("hi hey hello thanks bye okay oh yes no well so dear"))


def _street_mentions(clause: str, ctx: _Context, said: Sequence[_Found]) -> list[_Found]:
    found: list[_Found] = []
    for match in _STREET_ADDRESS.finditer(clause):
        address = _trim(match["a"])
        words = [w for w in address.split() if w[:1].isupper() and not _HAS_NUMBER.match(w)]
        if any(all(w in f.content for w in words) for f in said):
            continue
        if _DELIVERY_CONTEXT.search(ctx.turns[ctx.turn]):
            found.append(_Found(f"Delivery address: {address}", IDENTITY, "delivery_address"))
        else:
            found.append(_Found(f"Address: {address}", IDENTITY, "address"))
    return found


def _reverse_mentions(clause: str, ctx: _Context, said: Sequence[_Found]) -> list[_Found]:
    # "Dr. Okafor, our vet, was very calm"; "Rosa, my instructor, says..."
    found: list[_Found] = []
    for match in _REVERSE_MENTION.finditer(clause):
        name, rel = match["n"], match["rel"].lower()
        before = clause[: match.start()].split()
        if (
            name.split()[0] in _NOT_A_NAME
            or name.split()[0] in _NOT_A_SUBJECT
            or (before and before[-1].strip(",").lower() in _GREETING_WORDS)
            or (rel.endswith("s") and rel != "boss")
            or any(name in f.content for f in said)
        ):
            continue
        _meet(ctx, rel, name)
        found.append(_Found(f"Has {_article(rel)} {rel} named {name}", LIFE))
    return found


_LAST_NAME_BEFORE = re.compile(
    r"(?-i:[A-Z][a-z]+(?: [A-Z][a-z]+)+)|(?<=[a-z,] )(?-i:[A-Z][a-z]+)", re.IGNORECASE
)


def _pronoun_is_relative(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Lily Mendes, she's my granddaughter": the name said just before.
    text = ctx.turns[ctx.turn]
    clause_at = text.find(match[0][:20])
    names = [
        m[0]
        for m in _LAST_NAME_BEFORE.finditer(text, 0, max(clause_at, 0))
        if m[0].split()[0] not in _NOT_A_NAME and m[0].split()[0] not in _NOT_A_SUBJECT
    ]
    if clause_at <= 0 or not names:
        return None
    rel, name = match["rel"].lower(), names[-1]
    _meet(ctx, rel, name.split()[0])
    return _Found(f"Has {_article(rel)} {rel} named {name}", LIFE)


def _name_is_relative(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Karen is my daughter"
    name, rel = match["n"], match["rel"].lower()
    if name.split()[0] in _NOT_A_NAME or name.split()[0] in _NOT_A_SUBJECT:
        return None
    _meet(ctx, rel, name.split()[0])
    return _Found(f"Has {_article(rel)} {rel} named {name}", LIFE)


def _their_relative_is(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Her teacher is Mr. Alvarez"
    name = match["n"]
    if name.split()[0].rstrip(".") in _NOT_A_SUBJECT:
        return None
    return _Found(f"{_owner(match['own'], ctx)} {match['rel'].lower()} is {name}", LIFE)


def _named_diet(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Monique's gluten free", "Claire is allergic to shellfish"
    name = match["n"]
    x = _phrase(match["x"])
    if x is None or name in _NOT_A_NAME or name in _NOT_A_SUBJECT:
        return None
    health = re.match(r"(?:allergic|lactose|celiac|diabetic)", x, re.I)
    return _Found(f"{name} is {x}", HEALTH if health else PREFERENCE)


def _adopted(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    _meet(ctx, match["rel"], None)
    return _Found(f"{match['v'].capitalize()} {x}", LIFE)
