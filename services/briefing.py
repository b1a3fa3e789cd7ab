"""The call-start briefing: what an agent should know about a caller as the phone rings.

Built from the read models on a fast path: an indexed query per read model,
recency and salience only, no embedding or LLM call (the ElevenLabs initiation webhook and
Vapi's assistant-request keep the caller waiting while it runs). The same
briefing fills ElevenLabs' ``dynamic_variables`` and Vapi's ``variableValues``.

Every key is always present; an unknown caller gets empty strings, because
ElevenLabs refuses to start a conversation when a variable the agent uses is
missing. ``user_profile`` is the caller's profile summary (the summaries read model,
refreshed by the summariser when their memories change); ``memory_context`` keeps the
memories themselves, so an agent prompt can use either or both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from projections.conversations.queries import user_with_recent_conversations
from projections.memories import top_memories
from projections.summaries import latest_profile
from projections.summaries.summariser import PROFILE_CHARS, bounded
from schemas import utc_now

__all__ = ["BRIEFING_KEYS", "Briefing", "load_briefing"]

BRIEFING_KEYS = ("user_name", "user_profile", "memory_context", "recent_topics", "last_interaction")

#: How many past conversations the briefing looks at.
RECENT_CONVERSATIONS = 3
#: How many memories the briefing lists.
BRIEFING_MEMORIES = 8
# Memories of what happened, or how the caller felt, make sense with their date.
_DATED_SECTORS = frozenset({"episodic", "emotional"})
#: Upper bound on ``memory_context``: it lands in the agent's prompt on every call.
MEMORY_CONTEXT_CHARS = 1200


@dataclass(frozen=True)
class Briefing:
    """What the agent is told about the caller; empty strings when nothing is known."""

    user_name: str = ""
    user_profile: str = ""
    memory_context: str = ""
    recent_topics: str = ""
    last_interaction: str = ""

    def variables(self) -> dict[str, str]:
        """The variables, every key present, for the platform's reply."""
        return {key: getattr(self, key) for key in BRIEFING_KEYS}

    def greeting(self) -> str | None:
        """A first message for a returning caller whose name is known, else None."""
        if not self.user_name:
            return None
        return f"Hi {self.user_name}, good to hear from you again. How can I help today?"


async def load_briefing(
    conn: AsyncConnection[Any],
    tenant: str,
    subject: str,
    *,
    now: datetime | None = None,
    with_memories: bool = True,
    with_profile: bool = True,
) -> Briefing:
    """The briefing for ``subject``: one query per read model.

    ``memory_context`` lists the caller's strongest memories (salience decayed since
    each was last said, see :func:`projections.memories.top_memories`), dated when
    they are events, then the last call's summary; without memories (or with
    ``with_memories`` false, when the memories read model does not exist yet) the
    summaries of the last calls. ``user_profile`` is the caller's latest profile summary
    (empty without one, or with ``with_profile`` false, when the summaries read model
    does not exist yet).
    """
    rows = await user_with_recent_conversations(conn, tenant, subject, limit=RECENT_CONVERSATIONS)
    if not rows:
        return Briefing()
    display_name = rows[0]["display_name"] or ""
    conversations = [
        (row["ended_at"], row["started_at"], row["title"], row["summary"])
        for row in rows
        if row["ended_at"] is not None or row["started_at"] is not None
    ]
    memories = (
        await top_memories(conn, tenant, subject, now=now or utc_now(), limit=BRIEFING_MEMORIES)
        if with_memories
        else []
    )
    topics: list[str] = []
    summaries: list[str] = []
    for ended_at, started_at, title, summary in conversations:
        if title and title not in topics:
            topics.append(title)
        if summary:
            summaries.append(f"{_day(ended_at or started_at)}: {_one_line(summary)}")
    lines = [_memory_line(m) for m in memories]
    if lines and summaries:
        lines.append(f"Last call {summaries[0]}")
    context = lines or summaries
    last = conversations[0] if conversations else None
    profile = await latest_profile(conn, tenant, subject) if with_profile else None
    return Briefing(
        user_name=display_name,
        user_profile=bounded(_one_line(profile["text"]), PROFILE_CHARS) if profile else "",
        memory_context=bounded("\n".join(context), MEMORY_CONTEXT_CHARS),
        recent_topics="; ".join(topics),
        last_interaction=_day(last[0] or last[1]) if last else "",
    )


def _memory_line(memory: dict[str, Any]) -> str:
    content = _one_line(memory["content"])
    if memory["sector"] in _DATED_SECTORS:
        return f"- {content} ({_day(memory['observed_at'])})"
    return f"- {content}"


def _day(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment is not None else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())
