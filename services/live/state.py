"""A live call's state, as the live processor keeps it (services/live/worker.py), and the
decisions made on it: whether a caller's turn shifted the topic, and when a call whose
report never came is reconstructed.

The state is per call, kept in the faust table under the call's subject key (the Kafka
key every topic shares, so a subject's calls live on one partition: see
``CallTable``). Each value is the JSON of :class:`LiveCalls`, its personal fields sealed
through the personal-data codec like an event's: the table's changelog topic holds no
sentence in clear, erasure (the subject's key destroyed) makes it unreadable, and the
turns are sealed with the key of the call's day as well (transcript retention).

Topic shifts are decided on vectors: each final caller turn with something to say
(:data:`MIN_TERMS` content words or more) is embedded; its cosine with the current
topic's vector under :data:`SHIFT_COSINE` is a new topic (the first such turn opens the
first), and then the caller's memories are prefetched for it. Otherwise the turn joins the
topic (the topic's vector is the mean of its turns'). Short replies ("yes, Friday") never
shift: they answer the agent within the topic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas import PersonalJSONArray, TranscriptJSONArray, Turn
from schemas.codec import subject_sealing_codec, wire_context

__all__ = [
    "MAX_TURNS",
    "MIN_TERMS",
    "SHIFT_COSINE",
    "LiveCall",
    "LiveCalls",
    "cosine",
]

#: Live turns a call keeps (the reconstruction's transcript); later ones are not kept.
MAX_TURNS = 2000
#: Content words a caller's turn needs before it can open a topic.
MIN_TERMS = 2
#: Below this cosine with the current topic, a caller's turn opens a new topic
#: (all-MiniLM-L6-v2: turns about one thing score 0.3 and more, unrelated ones under 0.2).
SHIFT_COSINE = 0.3
#: Hits a call remembers having been offered (the newest).
MAX_OFFERED = 200


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


End = Literal["hung-up", "reported", "reconstructed"]


class LiveCall(BaseModel):
    """What the live processor knows of one call."""

    model_config = ConfigDict(extra="ignore")

    conversation_id: str
    tenant: str
    subject: str
    platform: str
    agent_id: str | None = None
    started_at: AwareDatetime
    turns: TranscriptJSONArray[list[Turn]] = Field(default_factory=list)
    """The call's final turns so far, in order (the reconstruction's transcript)."""
    turn_ids: list[str] = Field(default_factory=list)
    """The ids of the turn.said events folded in: a redelivered turn is folded once."""
    topic: PersonalJSONArray[list[float]] = Field(default_factory=list)
    """The current topic's vector (the mean of its turns'); empty before the first."""
    topic_turns: int = 0
    topics: int = 0
    """Topics opened so far (each one prefetched)."""
    offered: list[str] = Field(default_factory=list)
    """The ids of the hits prefetched for the call so far."""
    last_event_at: AwareDatetime
    """When the latest live event of the call was said or signalled (platform time)."""
    seen_at: float
    """When the processor last folded a live event of the call (its clock, epoch seconds):
    the reconstruction's timer runs from it."""
    ended: End | None = None
    ended_at: float | None = None
    """The processor's clock when the call ended (state is dropped a grace period later)."""

    def add_turn(self, event_id: str, turn: Turn) -> bool:
        """Fold one final turn in; False when it was folded already (a redelivery)."""
        if event_id in self.turn_ids:
            return False
        if len(self.turns) < MAX_TURNS:
            self.turns.append(turn)
            self.turn_ids.append(event_id)
        return True

    def joins_topic(self, vector: Sequence[float]) -> bool:
        """Whether a caller's turn embedded as `vector` is about the current topic; if it
        is, it joins it (the topic's vector moves towards it). The first turn opens one."""
        if self.topic and cosine(self.topic, vector) >= SHIFT_COSINE:
            n = self.topic_turns
            self.topic = [(t * n + v) / (n + 1) for t, v in zip(self.topic, vector, strict=True)]
            self.topic_turns = n + 1
            return True
        self.topic = list(vector)
        self.topic_turns = 1
        self.topics += 1
        return False

    def offer(self, ids: Sequence[str]) -> None:
        known = set(self.offered)
        self.offered.extend(i for i in ids if i not in known)
        del self.offered[:-MAX_OFFERED]

    def due_for_reconstruction(self, now: float, after_s: float) -> bool:
        """No report and no live event for `after_s`: the report is not coming."""
        return (
            self.ended in (None, "hung-up") and bool(self.turns) and now - self.seen_at >= after_s
        )

    def expired(self, now: float, grace_s: float) -> bool:
        """Ended (reported or reconstructed) longer than `grace_s` ago, or silent for a day
        without a transcript to reconstruct."""
        if self.ended_at is not None and self.ended in ("reported", "reconstructed"):
            return now - self.ended_at >= grace_s
        return not self.turns and now - self.seen_at >= 86400.0

    def next_due(self, after_s: float, grace_s: float) -> float | None:
        """The earliest clock time at which the call is due for reconstruction or expired
        (None: never, as things stand): what the processor's timer waits for."""
        due = []
        if self.ended in (None, "hung-up") and self.turns:
            due.append(self.seen_at + after_s)
        if self.ended_at is not None and self.ended in ("reported", "reconstructed"):
            due.append(self.ended_at + grace_s)
        if not self.turns:
            due.append(self.seen_at + 86400.0)
        return min(due) if due else None

    @property
    def ended_at_platform(self) -> datetime:
        """The call's end for a reconstruction: its last live event, or a moment after its
        last turn."""
        last_turn = self.started_at + timedelta(milliseconds=self.turns[-1].offset_ms)
        return max(self.last_event_at, last_turn)


class LiveCalls(BaseModel):
    """One subject's calls in progress (the table's value under the subject's key)."""

    model_config = ConfigDict(extra="ignore")

    calls: dict[str, LiveCall] = Field(default_factory=dict)

    def dumps(self) -> bytes:
        """The JSON the table keeps, each call's personal fields sealed for its subject, and
        the subject itself sealed as an event's is (the changelog is a topic like any other:
        no phone number in clear)."""
        sealing = subject_sealing_codec()
        calls = {}
        for call_id, call in self.calls.items():
            context = wire_context(call.subject, call.started_at)
            value = call.model_dump(mode="json", context=context)
            if sealing is not None:
                value["subject"] = sealing.seal_subject(call.subject)
            calls[call_id] = value
        return orjson.dumps({"calls": calls})

    @classmethod
    def loads(cls, raw: bytes | None) -> LiveCalls:
        """The calls of a table value (none for a missing one); a call whose subject's key
        was destroyed (erased) is left out."""
        if not raw:
            return cls()
        document: dict[str, Any] = orjson.loads(raw)
        sealing = subject_sealing_codec()
        calls = {}
        for call_id, value in document.get("calls", {}).items():
            if sealing is not None:
                opened = sealing.open_subject(value["subject"])
                if opened is None:
                    continue
                value["subject"] = opened[0]
            calls[call_id] = LiveCall.model_validate(value, context=wire_context(value["subject"]))
        return cls(calls=calls)
