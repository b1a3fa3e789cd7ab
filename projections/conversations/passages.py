"""Passages: what was said, each turn of a conversation with its neighbours as context.

A passage is one turn of the caller or the agent that has text. It is indexed with the
text of the passages around it in the same conversation (``WINDOW`` on each side), so an
answer that only makes sense after the question ("Friday works", after "How about
Friday the 7th at 9?") is found by the question's words; a hit still cites its own turn.
Its vector is of the turn after the turns it replies to (:attr:`Passage.embedded`).

This module is the one definition of a passage and its window: the conversations
projection writes passages for full-text search from it, and the embedding processor
embeds the same windows (``passages.embedded`` events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas import Turn

__all__ = ["PASSAGE_ROLES", "WINDOW", "Passage", "passages"]

#: Turns on each side of a passage that are indexed with it. Measured on the recall
#: corpus (tests/benchmarks/bench_recall.py; docs/benchmarks.md): one on each side
#: carries the question a short answer replies to.
WINDOW = 1

#: The turns that are passages: what people said, not tool output or system prompts.
PASSAGE_ROLES = frozenset({"user", "agent"})


@dataclass(frozen=True, slots=True)
class Passage:
    seq: int
    """The turn's index in the conversation's transcript."""
    role: str
    text: str
    before: tuple[str, ...]
    """The texts of up to ``WINDOW`` passages before it, in order."""
    after: tuple[str, ...]
    """The texts of up to ``WINDOW`` passages after it, in order."""

    @property
    def context(self) -> str:
        """The neighbours' text, indexed with the passage at a lower weight."""
        return " ".join((*self.before, *self.after))

    @property
    def embedded(self) -> str:
        """What is embedded: the passage after what it replies to (the turns before it).

        Measured on the recall corpus's tune half (docs/benchmarks.md): the turn alone or
        after the turn before it both beat the whole window (recall@10 0.853-0.857
        against 0.840); the whole window makes a turn's neighbours near-duplicates of it,
        which then fill the results. The turn before it is what makes "Friday works"
        mean something."""
        return " ".join((*self.before, self.text))


def passages(turns: Sequence[Turn], *, window: int = WINDOW) -> list[Passage]:
    """The passages of a transcript, in order."""
    said = [
        (seq, turn.role, turn.text.strip())
        for seq, turn in enumerate(turns)
        if turn.role in PASSAGE_ROLES and turn.text.strip()
    ]
    texts = [text for _, _, text in said]
    return [
        Passage(
            seq=seq,
            role=role,
            text=text,
            before=tuple(texts[max(0, i - window) : i]),
            after=tuple(texts[i + 1 : i + 1 + window]),
        )
        for i, (seq, role, text) in enumerate(said)
    ]
