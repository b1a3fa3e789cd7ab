"""What an extractor returns: :class:`Candidate` memories in an :class:`Extraction` (which
says which path produced them), the :class:`Extractor` protocol, and
:func:`normalise_content`, the comparison key that tells "the same fact" apart.

A candidate has no id yet: the extraction processor decides whether it is a new
memory, the reinforcement of a known one (same normalised content, or only part of
what a known one for the same ``key`` says: :func:`is_partial`) or the replacement of
a known one (same ``key``), and only then derives an id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from schemas.events import ConversationEndedData, Sector

__all__ = ["KINDS", "Candidate", "Extraction", "Extractor", "is_partial", "normalise_content"]

#: What an extractor saw; ``MemoryExtractedData.kind`` takes one of these.
KINDS = frozenset(
    {"fact", "preference", "plan", "problem", "feeling", "habit", "event", "identity"}
)

_WHITESPACE = re.compile(r"\s+")
# Punctuation (and spaces) at either end; apostrophes inside words are kept.
_EDGE_PUNCTUATION = re.compile(r"^[\s\W_]+|[\s\W_]+$")
_WORD_EDGES = ",.;:!?\"'()"
_NUMBER_WORD = re.compile(
    r"^(?:\d[\d,.]*\w*|zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundred|thousand|million|billion|grand|k)$"
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A memory an extractor found in one conversation, before it has an id.

    ``content`` is concise and in the third person about the caller, without a
    trailing period ("Allergic to penicillin", "Prefers morning appointments").
    ``key`` names a slot for facts that replace each other (``home_city``,
    ``date_of_birth``...) and is None for facts that accumulate. ``turns`` are the
    indices into ``ConversationEndedData.turns`` the memory came from, sorted.
    """

    content: str
    sector: Sector
    salience: float
    kind: str
    key: str | None
    turns: tuple[int, ...]

    def __post_init__(self) -> None:
        # Checked here so a faulty extractor fails on its own output, not later in
        # the event schema with a less helpful message.
        if not self.content.strip():
            raise ValueError("a candidate needs content")
        if not 0.0 <= self.salience <= 1.0:
            raise ValueError(f"salience {self.salience} is outside 0..1")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {sorted(KINDS)}")
        if not self.turns or any(t < 0 for t in self.turns):
            raise ValueError("a candidate comes from at least one turn, by index")
        if list(self.turns) != sorted(set(self.turns)):
            raise ValueError(f"turns {self.turns} are not sorted and distinct")


@dataclass(frozen=True, slots=True)
class Extraction:
    """The candidates of one conversation and the path that produced them.

    An extractor with a fallback (the LLM extractor falls back to the rules) names the
    path per result, so each memory event records what actually made it.
    """

    candidates: tuple[Candidate, ...]
    extractor: str
    """``rules``, or ``llm:<model>``."""
    extractor_version: str


@runtime_checkable
class Extractor(Protocol):
    """Turns one finished conversation into candidate memories about the caller.

    The rule-based extractor is pure: the same conversation gives the same candidates,
    which is what lets the processor replay a batch and derive the same ids. A remote
    model is not (see ``deterministic`` and the processor's answer journal).
    """

    name: str
    """The extractor's own path name: ``rules``, or ``llm:<model>``."""
    version: str
    """Bumped when the same conversation would give different candidates."""
    deterministic: bool
    """Whether the same conversation always gives the same extraction."""

    def extract(self, conversation: ConversationEndedData) -> Extraction: ...

    def extract_many(self, conversations: Sequence[ConversationEndedData]) -> list[Extraction]:
        """One extraction per conversation, in order (concurrently where that helps)."""
        ...


def normalise_content(text: str) -> str:
    """The form two contents are compared in: lowercase, single spaces, no end punctuation.

    >>> normalise_content("  Allergic to  Penicillin. ")
    'allergic to penicillin'
    """
    return _EDGE_PUNCTUATION.sub("", _WHITESPACE.sub(" ", text.lower()))


def _words(normalised: str) -> list[str]:
    return [w.strip(_WORD_EDGES) for w in normalised.split() if w.strip(_WORD_EDGES)]


def is_partial(new: str, old: str) -> bool:
    """Whether content ``new`` says only part of what ``old`` says, for the same slot.

    A caller who gave their full name once and their first name later has not changed
    name: the shorter value reinforces the fuller one rather than replacing it. Partial
    means that ``new``'s words are a proper prefix of ``old``'s ("Name: Maria" of "Name:
    Maria Lopez", "Takes metformin" of "Takes metformin 500 mg"), or, for a labelled
    value ("Label: value"), that its value's words are a proper subset of ``old``'s under
    the same label ("Address: Fremont" of "Address: 12 Oak Street, Fremont"). A number cut
    short is a different number: "Budget is twenty" is no part of "Budget is twenty five
    hundred".

    >>> is_partial("Name: Maria", "Name: Maria Lopez")
    True
    >>> is_partial("Name: Maria Lopez", "Name: Maria")
    False
    >>> is_partial("Lives in Austin", "Lives in Austin, Texas")
    True
    >>> is_partial("Prefers calls", "Prefers texts to calls")
    False
    """
    new_words, old_words = _words(normalise_content(new)), _words(normalise_content(old))
    if not new_words or len(new_words) >= len(old_words):
        return False
    if old_words[: len(new_words)] == new_words:
        cut = old_words[len(new_words)]
        return not (_NUMBER_WORD.match(new_words[-1]) and _NUMBER_WORD.match(cut))
    new_label, colon, new_value = normalise_content(new).partition(":")
    old_label, old_colon, old_value = normalise_content(old).partition(":")
    if not (colon and old_colon) or new_label != old_label:
        return False
    new_set, old_set = set(_words(new_value)), set(_words(old_value))
    return bool(new_set) and new_set < old_set
