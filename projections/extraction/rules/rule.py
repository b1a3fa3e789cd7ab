"""What a rule is and what it yields, and the sector and salience of each family.

A rule (``_rule``) is a case-insensitive pattern matched at the start of a clause and
a builder that makes a ``_Found`` (content, spec, slot key) of the match, or nothing;
builders read and write the per-conversation ``_Context``.

Sectors: semantic for facts, preferences and identity; episodic for events,
appointments, plans and problems; procedural for habits and how the caller likes
things done; emotional for feelings; reflective for the caller's own decisions,
goals and realisations.

Salience, before nudges:

==============================================  ========
what                                            salience
==============================================  ========
health: allergies, conditions, medication       0.9
identity: name, date of birth, contact details  0.8
appointments and other events                   0.7
life facts: home, work, family                  0.7
preferences                                     0.6
plans                                           0.6
problems                                        0.6
fraud and disputed charges (problems)           0.7
goals, decisions, realisations (reflective)     0.6
feelings                                        0.5
habits                                          0.5
==============================================  ========

(Fraud's spec, ``FRAUD``, is with its patterns in ``domains``; the nudges are the
extractor's.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schemas.events import Sector

# ----------------------------------------------------------------- what a rule yields


@dataclass(frozen=True, slots=True)
class _Spec:
    """The sector, kind and base salience of one family of memories."""

    sector: Sector
    kind: str
    salience: float


HEALTH = _Spec("semantic", "fact", 0.9)
IDENTITY = _Spec("semantic", "identity", 0.8)
EVENT = _Spec("episodic", "event", 0.7)
LIFE = _Spec("semantic", "fact", 0.7)
PREFERENCE = _Spec("semantic", "preference", 0.6)
MANNER = _Spec("procedural", "preference", 0.6)
PLAN = _Spec("episodic", "plan", 0.6)
PROBLEM = _Spec("episodic", "problem", 0.6)
GOAL = _Spec("reflective", "plan", 0.6)
INSIGHT = _Spec("reflective", "fact", 0.6)
FEELING = _Spec("emotional", "feeling", 0.5)
HABIT = _Spec("procedural", "habit", 0.5)


@dataclass(frozen=True, slots=True)
class _Found:
    """What one rule made of one clause."""

    content: str
    spec: _Spec
    key: str | None = None
    request: str | None = None
    """For an appointment request the agent may fulfil in the same call: which
    confirmations fulfil it (``book``, ``move``, ``cancel`` or ``any``)."""
    continues: str | None = None
    """A template for a next clause that only names another item ("... penicillin. And
    latex"): ``{x}`` is that item."""
    confirms: str | None = None
    """For an agent's confirmation: what it did (``book``, ``move`` or ``cancel``)."""
    extra_turns: tuple[int, ...] = ()
    """Turns besides the one matched that the memory also comes from (context)."""


@dataclass(slots=True)
class _Context:
    """Per-conversation state the rules read and write while walking the turns."""

    turns: Sequence[str]
    roles: Sequence[str]
    turn: int = 0
    first_user_turn: bool = False
    problem_subject: str | None = None
    """The last thing the caller said was wrong ("Back tooth"), for a later "it hurts"."""
    people: dict[str, str] = field(default_factory=dict)
    """Names the caller gave to people and pets ("Max" -> "Dog Max"), for "Max has..."."""
    last_person: tuple[str, str, int, str] | None = None
    """Who the caller last spoke of, for a later "she" or "his": the label ("Mom", "Dog
    Max"), "she", "he" or "any", the turn, and the relation when they were not named."""
    behalf: tuple[str, str, int, str] | None = None
    """Whom the caller is calling for ("I'm calling for my dad"): "he" all call long."""
    last_drug: str | None = None
    """The medication last named in the call, for "she dropped it to eighteen units"."""


_Build = Callable[[re.Match[str], _Context], "_Found | list[_Found] | None"]
_BuildOne = Callable[[re.Match[str], _Context], "_Found | None"]


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    build: _Build
    lead: str | None
    """The clause's first word when the pattern fixes it ("i", "my"): other clauses skip
    the rule without running the regex, which keeps a long call in a few milliseconds."""
    needs: re.Pattern[str] | None = None
    """Words one of which a clause must contain (lowercase) for the regex to be worth
    running, for a rule whose first word is not fixed."""


_FIXED_LEAD = re.compile(r"(?:(I)(?=[ ('])|(my|it|this) )")
_GROUP_START = re.compile(r"\((?:\?:|\?P<\w+>)")


def _lead(pattern: str) -> str | None:
    """The first word every match of an anchored ``pattern`` starts with, if fixed."""
    if not pattern.startswith("^"):
        return None
    body = pattern[1:]
    group = _GROUP_START.match(body)
    if group is None:
        fixed = _FIXED_LEAD.match(body)
        return (fixed[1] or fixed[2]).lower() if fixed else None
    # A leading group counts when it is not optional and all its alternatives agree.
    depth, start, alternatives = 0, group.end(), []
    for index in range(group.end(), len(body)):
        char = body[index]
        if char == "\\":
            continue
        if char == "(" and body[index - 1] != "\\":
            depth += 1
        elif char == ")" and body[index - 1] != "\\":
            if depth == 0:
                alternatives.append(body[start:index])
                if body[index + 1 : index + 2] in ("?", "*"):
                    return None
                break
            depth -= 1
        elif char == "|" and depth == 0:
            alternatives.append(body[start:index])
            start = index + 1
    leads = {_lead("^" + alternative) for alternative in alternatives}
    return leads.pop() if len(leads) == 1 else None


def _rule(pattern: str, build: _Build, needs: str = "") -> _Rule:
    # Patterns are case-insensitive; (?-i:...) marks the parts that rely on case
    # (a capitalised name). ``needs``: "|"-separated words, see _Rule.needs.
    words = re.compile("|".join(re.escape(w) for w in needs.split("|"))) if needs else None
    return _Rule(re.compile(pattern, re.IGNORECASE), build, _lead(pattern), words)
