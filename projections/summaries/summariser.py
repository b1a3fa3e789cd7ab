"""Who writes summaries: the :class:`Summariser` protocol and the offline
:class:`ExtractiveSummariser`.

A summariser turns inputs the summariser processor has gathered (a user's active
memories, or one finished conversation) into text. The processor owns everything
else: which memories are active, when a profile is due, event ids, the platform's own
conversation summary. The LLM-backed summariser (``llm:<model>``, through
``projections/providers``, in ``llm.py``) implements the protocol too; the
extractive one is the default, the LLM one's fallback, and needs no network.

The extractive profile is one short paragraph, at most :data:`PROFILE_CHARS`
characters, from the strongest memories grouped by what they are::

    Identity: Name is Maria Lopez. Facts: Allergic to penicillin; lives in Boulder.
    Preferences: Prefers morning appointments. Plans: Wants whitening before June.

Strength is the memories read model's score (salience plus 0.05 per reinforcement,
capped at 1, decayed per sector) taken at the profile's own time (the newest input
event), not at the wall clock, so the same inputs always give the same text.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from projections.extraction.rules import RuleExtractor
from projections.memories.projection import DECAY_PER_DAY
from projections.memories.queries import decayed_salience
from schemas import ConversationEndedData

__all__ = [
    "CONVERSATION_CHARS",
    "PROFILE_CHARS",
    "PROFILE_MEMORIES",
    "ExtractiveSummariser",
    "ProfileMemory",
    "Summariser",
    "Summary",
    "bounded",
    "ranked_memories",
    "strength",
]

#: Upper bound on a profile's text: it lands in the agent's prompt on every call.
PROFILE_CHARS = 600
#: Upper bound on an extractive conversation summary.
CONVERSATION_CHARS = 400
#: At most this many memories go into a profile, strongest first.
PROFILE_MEMORIES = 12

# Groups in the order a reader wants them (who, what is true, what they like, what is
# coming up, what went wrong, how they feel); a kind not listed goes under "Other".
_GROUPS: tuple[tuple[str, str], ...] = (
    ("identity", "Identity"),
    ("fact", "Facts"),
    ("asserted", "Noted"),
    ("preference", "Preferences"),
    ("habit", "Habits"),
    ("plan", "Plans"),
    ("event", "Recent events"),
    ("problem", "Problems"),
    ("feeling", "Feelings"),
)
_OTHER = "Other"
_LABELS = dict(_GROUPS)
# What happened, and how the caller felt, reads right only with its date.
_DATED_SECTORS = frozenset({"episodic", "emotional"})
# Caller turns shorter than this say nothing worth a summary ("yes", "thanks").
_MIN_WORDS = 4


@dataclass(frozen=True, slots=True)
class ProfileMemory:
    """One active memory of a user, as the summariser processor has applied it."""

    memory_id: uuid.UUID
    content: str
    sector: str
    kind: str
    salience: float
    reinforcements: int
    observed_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True, slots=True)
class Summary:
    """A summariser's text and the memories it used (strongest first).

    ``generator`` / ``generator_version`` name the path that wrote the text when it is not
    the summariser's own (an LLM summariser that fell back to the extractive one); None:
    the summariser's ``name`` and ``version``.
    """

    text: str
    memory_ids: tuple[uuid.UUID, ...] = ()
    generator: str | None = None
    generator_version: str | None = None


@runtime_checkable
class Summariser(Protocol):
    """Writes profile and conversation summaries; deterministic for the same inputs."""

    name: str
    """The generator recorded on ``summary.generated``: ``extractive`` or ``llm:<model>``."""
    version: str
    """Bumped when the same inputs would give another text."""

    async def profile(self, memories: Sequence[ProfileMemory], as_of: datetime) -> Summary:
        """The user's profile from their active memories (may be empty: nothing known)."""
        ...

    async def conversation(self, conversation: ConversationEndedData) -> Summary | None:
        """A summary of one finished conversation, or None when it said nothing."""
        ...


def strength(memory: ProfileMemory, as_of: datetime) -> float:
    """The memories read model's score for ``memory`` at ``as_of`` (see module docstring)."""
    days = (as_of - memory.last_seen_at).total_seconds() / 86400.0
    rate = DECAY_PER_DAY.get(memory.sector, 0.0)
    return decayed_salience(memory.salience, memory.reinforcements, rate, days)


def ranked_memories(memories: Sequence[ProfileMemory], as_of: datetime) -> list[ProfileMemory]:
    """What a profile is written from: the :data:`PROFILE_MEMORIES` strongest memories with
    content at ``as_of``, strongest first (ties by id, so the order is a function of the
    inputs)."""
    return sorted(
        (m for m in memories if m.content.strip()),
        key=lambda m: (-strength(m, as_of), m.memory_id),
    )[:PROFILE_MEMORIES]


class ExtractiveSummariser:
    """Summaries put together from what was said; no model, no network."""

    name = "extractive"
    version = "1"

    def __init__(self) -> None:
        self._extractor = RuleExtractor()

    async def profile(self, memories: Sequence[ProfileMemory], as_of: datetime) -> Summary:
        return self.profile_now(memories, as_of)

    async def conversation(self, conversation: ConversationEndedData) -> Summary | None:
        return self.conversation_now(conversation)

    def profile_now(self, memories: Sequence[ProfileMemory], as_of: datetime) -> Summary:
        """:meth:`profile` without the coroutine (it does no I/O)."""
        ranked = ranked_memories(memories, as_of)
        # Drop the weakest memory until the paragraph fits; a single memory longer
        # than the bound is cut at a word.
        while ranked:
            text = _paragraph(ranked)
            if len(text) <= PROFILE_CHARS or len(ranked) == 1:
                return Summary(bounded(text, PROFILE_CHARS), tuple(m.memory_id for m in ranked))
            ranked = ranked[:-1]
        return Summary("")

    def conversation_now(self, conversation: ConversationEndedData) -> Summary | None:
        """:meth:`conversation` without the coroutine (it does no I/O)."""
        candidates = self._extractor.extract(conversation).candidates
        if candidates:
            # In the order they were said.
            ordered = sorted(candidates, key=lambda c: (c.turns[0], c.content))
            text = "Caller: " + "; ".join(_sentence_part(c.content) for c in ordered) + "."
            return Summary(bounded(text, CONVERSATION_CHARS))
        said = [
            " ".join(str(turn.text).split())
            for turn in conversation.turns
            if turn.role == "user" and len(str(turn.text).split()) >= _MIN_WORDS
        ]
        if not said:
            return None
        return Summary(bounded("Caller said: " + " ".join(said), CONVERSATION_CHARS))


def _paragraph(memories: Sequence[ProfileMemory]) -> str:
    groups: dict[str, list[str]] = {}
    for memory in memories:
        label = _LABELS.get(memory.kind, _OTHER)
        part = _sentence_part(memory.content)
        if memory.sector in _DATED_SECTORS:
            part = f"{part} ({memory.observed_at.date().isoformat()})"
        groups.setdefault(label, []).append(part)
    order = [label for _, label in _GROUPS] + [_OTHER]
    return " ".join(
        f"{label}: {_capitalised('; '.join(groups[label]))}." for label in order if label in groups
    )


def _sentence_part(content: str) -> str:
    """One memory as part of a sentence: one line, no end punctuation. Its case is kept:
    the first word may be a name ("Maria's daughter is Sofia")."""
    return " ".join(content.split()).rstrip(".;,")


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, at a word boundary when there is one in its
    second half, with an ellipsis (the briefing bounds its variables with it too)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + "…"
