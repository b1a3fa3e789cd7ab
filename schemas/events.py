"""Every event type memstream appends, each at its latest version, with upcasters from older ones.

Grouped by logical topic. Adding a field, removing one or changing its meaning
is a new version: bump ``v``, change the payload model, and add a static method
marked ``@upcasts_from(old_v)`` that rewrites the old ``data`` dict. Stored
events are never rewritten; readers upcast on read. Whether a field is personal (sealed
on the wire, ``schemas.codec``) is not part of its version: a sealed value and a plain
one, written before, decode to the same event.
"""

from __future__ import annotations

import math
import re
import struct
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.codec import (
    ERASED,
    MEMORY_PERIODS,
    TRANSCRIPT_PERIODS,
    MemoryJSONArray,
    MemoryText,
    PersonalJSON,
    PersonalJSONArray,
    PersonalText,
    TranscriptJSONArray,
)
from schemas.envelope import MAX_ID_CHARS, Event, EventData, Id, Instant, upcasts_from

__all__ = [
    "MAX_CALL_SECS",
    "Analysis",
    "CallSignalled",
    "CallSignalledData",
    "Channel",
    "ContextPrefetched",
    "ContextPrefetchedData",
    "ConversationEnded",
    "ConversationEndedData",
    "ConversationFailed",
    "ConversationFailedData",
    "ConversationStarted",
    "ConversationStartedData",
    "EmbeddingComputed",
    "EmbeddingComputedData",
    "LiveSignal",
    "MemoryAsserted",
    "MemoryAssertedData",
    "MemoryExtracted",
    "MemoryExtractedData",
    "MemoryReinforced",
    "MemoryReinforcedData",
    "MemoryRetracted",
    "MemoryRetractedData",
    "MemorySuperseded",
    "MemorySupersededData",
    "PassageVector",
    "PassagesEmbedded",
    "PassagesEmbeddedData",
    "PrefetchedHit",
    "Provenance",
    "Sector",
    "SummaryGenerated",
    "SummaryGeneratedData",
    "SummaryInputs",
    "SummaryKind",
    "ToolCall",
    "Turn",
    "TurnRole",
    "TurnSaid",
    "TurnSaidData",
    "UserForgotten",
    "UserForgottenData",
]

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
ConversationId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
"""A platform's conversation or call id: indexed by the read models, so at most
:data:`~schemas.envelope.MAX_ID_CHARS` characters."""

#: No call lasts a week: a longer duration, or a turn said later than that into its call,
#: is a broken sender. The webhooks refuse the same (services/ingest/platforms/payload.py);
#: the read models store offsets as 32-bit integers of milliseconds.
MAX_CALL_SECS = 7 * 24 * 3600


def _e164_or_erased(value: str) -> str:
    # Checked on the decoded value; an erased number reads as the codec's marker.
    if value != ERASED and not _E164.fullmatch(value):
        raise ValueError("must be a phone number in E.164 form, e.g. +14155550123")
    return value


E164 = Annotated[PersonalText, AfterValidator(_e164_or_erased)]
"""A phone number in E.164 form (``^\\+[1-9][0-9]{1,14}$``); personal."""


def _storable_salience(value: float) -> float:
    # The memories read model keeps salience as a 4-byte float (``real``). A value too
    # small for one (1e-320: a client's, or an LLM's talked into it) underflows there, and
    # PostgreSQL refuses it rather than storing 0: the event would be dead-lettered. It
    # is that 0, here, so every reader sees what the read model can store.
    if value and not struct.unpack("f", struct.pack("f", value))[0]:
        return 0.0
    return value


Salience = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(_storable_salience)]
"""How much a memory matters, 0..1; a value below a 4-byte float's smallest is 0."""

Channel = Literal["phone", "web", "unknown"]
TurnRole = Literal["user", "agent", "tool", "system"]
Sector = Literal["semantic", "episodic", "procedural", "emotional", "reflective"]
SummaryKind = Literal["profile", "conversation"]

DynamicValue = str | int | float | bool | None


# ------------------------------------------------------------------ conversations


class ConversationStartedData(EventData):
    conversation_id: ConversationId
    caller_phone: E164 | None = None
    """The caller's number in E.164 form, when the call came over the phone network."""
    user_id: Annotated[PersonalText, StringConstraints(max_length=MAX_ID_CHARS)] | None = None
    """The caller's id in the customer's own system, when the platform passes one."""
    agent_id: Id | None = None
    dynamic_variables: PersonalJSON[dict[str, DynamicValue]] = Field(default_factory=dict)
    """What the platform fills the agent's prompt with: the caller's name, account..."""
    channel: Channel = "unknown"


class ConversationStarted(Event):
    """A call or chat with an agent began."""

    type: Literal["conversation.started"] = "conversation.started"
    v: Literal[1] = 1
    data: ConversationStartedData
    topic: ClassVar[str] = "conversations"


class ToolCall(EventData):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    """What the agent passed: the caller's details, what they asked for (personal: sealed
    with the transcript, see ``ConversationEndedData.turns``)."""
    result: str | None = None
    """What the tool answered; part of the transcript, so personal."""


class Turn(EventData):
    role: TurnRole
    text: str
    """What was said; empty for a turn that only calls tools. Personal: sealed with the
    transcript (``ConversationEndedData.turns``)."""
    offset_ms: int = Field(strict=True, ge=0, le=MAX_CALL_SECS * 1000)
    """Milliseconds since the start of the conversation (an integer: ``true`` is not 1)."""
    tool_calls: tuple[ToolCall, ...] = ()


class Analysis(EventData):
    """The platform's own post-call analysis."""

    summary: PersonalText | None = None
    title: PersonalText | None = None
    successful: bool | None = None
    data_collected: PersonalJSON[dict[str, Any]] = Field(default_factory=dict)
    """The platform's data collection results: what the caller said, extracted."""
    evaluation: PersonalJSON[dict[str, Any]] = Field(default_factory=dict)
    """Evaluation criteria with the model's rationale, which quotes the call."""


class ConversationEndedData(EventData):
    conversation_id: ConversationId
    started_at: Instant
    ended_at: Instant | None = None
    duration_secs: float | None = Field(default=None, ge=0, le=MAX_CALL_SECS)
    status: str
    """The platform's final status, e.g. ``done``."""
    turns: TranscriptJSONArray[tuple[Turn, ...]] = ()
    """The transcript: every turn's text, tool calls and results. Personal, and stored
    through the codec as a whole (one value, not one per turn: opening it is on every
    projection's hot path), sealed with the key of the day the call began as well: empty
    once the tenant's transcript retention is over (docs/architecture.md, "Retention")."""
    metadata: PersonalJSON[dict[str, Any]] = Field(default_factory=dict)
    """Platform metadata: cost, termination reason, phone numbers..."""
    analysis: Analysis | None = None
    dynamic_variables: PersonalJSON[dict[str, Any]] = Field(default_factory=dict)


class ConversationEnded(Event):
    """A conversation finished; carries the full transcript, metadata and platform analysis."""

    type: Literal["conversation.ended"] = "conversation.ended"
    v: Literal[2] = 2
    data: ConversationEndedData
    topic: ClassVar[str] = "conversations"
    has_transcript: ClassVar[bool] = True
    period_family: ClassVar[str | None] = TRANSCRIPT_PERIODS

    @property
    def began(self) -> datetime:
        """The start of the call: the event happens at its end."""
        return self.data.started_at

    @staticmethod
    @upcasts_from(1)
    def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
        """v1 turns were ``{role, message, time_in_call_secs, tool_calls: list | None}``.

        Keys are renamed only when present and values converted only when they
        have the old type, so a broken v1 record fails validation with a field
        path instead of a ``KeyError`` here.
        """
        upcast = dict(data)
        turns = data.get("turns")
        if isinstance(turns, list):
            upcast["turns"] = [
                _turn_v1_to_v2(turn) if isinstance(turn, dict) else turn for turn in turns
            ]
        return upcast


def _turn_v1_to_v2(turn: dict[str, Any]) -> dict[str, Any]:
    upcast = dict(turn)
    if "message" in upcast:
        message = upcast.pop("message")
        # v1 wrote null for agent turns that only called a tool; v2 text is a string.
        upcast["text"] = "" if message is None else message
    if "time_in_call_secs" in upcast:
        secs = upcast.pop("time_in_call_secs")
        is_number = isinstance(secs, int | float) and not isinstance(secs, bool)
        upcast["offset_ms"] = round(secs * 1000) if is_number and math.isfinite(secs) else secs
    if "tool_calls" in upcast and upcast["tool_calls"] is None:
        upcast["tool_calls"] = []
    return upcast


class ConversationFailedData(EventData):
    conversation_id: ConversationId
    reason: PersonalText
    """The platform's message, which may quote the call or name the number."""
    failure_type: str | None = None
    metadata: PersonalJSON[dict[str, Any]] = Field(default_factory=dict)


class ConversationFailed(Event):
    """A conversation could not take place or could not be completed."""

    type: Literal["conversation.failed"] = "conversation.failed"
    v: Literal[1] = 1
    data: ConversationFailedData
    topic: ClassVar[str] = "conversations"


# -------------------------------------------- asserted through the API (conversations)


class MemoryAssertedData(EventData):
    memory_id: uuid.UUID
    content: Annotated[MemoryText, StringConstraints(min_length=1)]
    """Sealed with the key of the day it was asserted (``occurred_at``) as well: past the
    tenant's memory retention it reads ``ERASED``, and the projections skip it."""
    sector: Sector
    salience: Salience = 0.5
    asserted_by: str | None = None
    """Who stated the memory: an operator, an agent tool, an import job."""


class MemoryAsserted(Event):
    """Someone stated a memory about the user directly, through the API."""

    type: Literal["memory.asserted"] = "memory.asserted"
    v: Literal[1] = 1
    data: MemoryAssertedData
    topic: ClassVar[str] = "conversations"
    period_family: ClassVar[str | None] = MEMORY_PERIODS


class MemoryRetractedData(EventData):
    memory_id: uuid.UUID
    reason: PersonalText | None = None


class MemoryRetracted(Event):
    """A memory must no longer be used (asserted or extracted alike)."""

    type: Literal["memory.retracted"] = "memory.retracted"
    v: Literal[1] = 1
    data: MemoryRetractedData
    topic: ClassVar[str] = "conversations"


class UserForgottenData(EventData):
    reason: PersonalText | None = None
    requested_by: str | None = None


class UserForgotten(Event):
    """Erasure of the subject: their key is destroyed and projections purge their rows."""

    type: Literal["user.forgotten"] = "user.forgotten"
    v: Literal[1] = 1
    data: UserForgottenData
    topic: ClassVar[str] = "conversations"


# ------------------------------------------------------- derived by extraction (memories)


class Provenance(EventData):
    """Where a memory came from: the conversation and the turns that said it."""

    conversation_id: ConversationId
    turns: tuple[Annotated[int, Field(ge=0)], ...] = ()
    """Indices into the conversation's transcript (``conversation.ended`` turns)."""


class MemoryExtractedData(EventData):
    memory_id: uuid.UUID
    content: Annotated[MemoryText, StringConstraints(min_length=1)]
    """Sealed with the key of the day it was said (``observed_at``) as well: past the
    tenant's memory retention it reads ``ERASED``, and the projections skip it."""
    sector: Sector
    salience: Salience
    kind: NonEmptyStr
    """What the extractor saw: ``fact``, ``preference``, ``plan``, ``problem``, ``feeling``..."""
    key: str | None = None
    """A slot for facts that replace each other (``home_city``); None when facts accumulate."""
    observed_at: Instant
    """When the caller said it: the start of the call."""
    extractor: NonEmptyStr
    """Which path produced it: ``rules``, or ``llm:<model>``."""
    extractor_version: NonEmptyStr
    provenance: Provenance


class MemoryExtracted(Event):
    """A new memory about the user, found in a finished conversation."""

    type: Literal["memory.extracted"] = "memory.extracted"
    v: Literal[1] = 1
    data: MemoryExtractedData
    topic: ClassVar[str] = "memories"
    period_family: ClassVar[str | None] = MEMORY_PERIODS

    @property
    def began(self) -> datetime:
        """When the caller said it: the start of the call (``data.observed_at``)."""
        return self.data.observed_at


class MemoryReinforcedData(EventData):
    memory_id: uuid.UUID
    """The memory said again."""
    observed_at: Instant
    provenance: Provenance


class MemoryReinforced(Event):
    """A known memory came up again in another conversation."""

    type: Literal["memory.reinforced"] = "memory.reinforced"
    v: Literal[1] = 1
    data: MemoryReinforcedData
    topic: ClassVar[str] = "memories"

    @property
    def began(self) -> datetime:
        """When the caller said it: the start of the call (``data.observed_at``)."""
        return self.data.observed_at


class MemorySupersededData(EventData):
    memory_id: uuid.UUID
    """The memory no longer true."""
    superseded_by: uuid.UUID
    """The memory that replaces it (extracted from the same conversation)."""
    observed_at: Instant


class MemorySuperseded(Event):
    """A memory was replaced by a newer fact for the same slot (moved city, changed plan)."""

    type: Literal["memory.superseded"] = "memory.superseded"
    v: Literal[1] = 1
    data: MemorySupersededData
    topic: ClassVar[str] = "memories"

    @property
    def began(self) -> datetime:
        """When the caller said it: the start of the call (``data.observed_at``)."""
        return self.data.observed_at


# ----------------------------------------------------------- derived by embedding (embeddings)


class EmbeddingComputedData(EventData):
    memory_id: uuid.UUID
    model: NonEmptyStr
    """The embedding model, e.g. ``local/all-minilm-l6-v2-dq8``; vectors of different
    models are never compared."""
    dimension: int = Field(ge=1, le=16_000)
    vector: MemoryJSONArray[tuple[float, ...]]
    """Unit length (cosine similarity is a dot product), finite. The embedder records
    float32 values in their shortest decimal form (older events: doubles); both read the
    same. As personal as the memory's content: sealed like it, with the key of the day the
    memory was said (the event's ``occurred_at``); empty once the tenant's memory retention
    is over (older events carry it plain), and the projection skips it."""

    @model_validator(mode="after")
    def _vector_has_the_dimension(self) -> EmbeddingComputedData:
        # No per-value finiteness check here: pydantic's core already rejects NaN and
        # infinity (allow_inf_nan is off), and a Python loop over the 384 values was about
        # a fifth of decoding this event on a rebuild.
        if self.vector and len(self.vector) != self.dimension:
            raise ValueError(f"vector has {len(self.vector)} values, dimension is {self.dimension}")
        return self


class EmbeddingComputed(Event):
    """A memory's content as a vector, by one model (recorded so rebuilds call no model)."""

    type: Literal["embedding.computed"] = "embedding.computed"
    v: Literal[1] = 1
    data: EmbeddingComputedData
    topic: ClassVar[str] = "embeddings"
    period_family: ClassVar[str | None] = MEMORY_PERIODS


class PassageVector(EventData):
    """One passage's vector: the turn ``seq`` of the conversation, with its context."""

    seq: int = Field(ge=0)
    """The turn's index in the conversation's transcript (``conversation.ended`` turns)."""
    vector: tuple[float, ...]
    """Unit length, like ``embedding.computed``'s."""


class PassagesEmbeddedData(EventData):
    conversation_id: ConversationId
    model: NonEmptyStr
    """The embedding model; vectors of different models are never compared."""
    dimension: int = Field(ge=1, le=16_000)
    window: int = Field(ge=0, le=10)
    """Turns before each passage that were embedded with it (what it replies to)."""
    passages: TranscriptJSONArray[tuple[PassageVector, ...]] = ()
    """Sealed like the transcript they come from (with the key of the day the call began):
    empty once the tenant's transcript retention is over. The processor never appends an
    event without passages."""

    @model_validator(mode="after")
    def _vectors_have_the_dimension(self) -> PassagesEmbeddedData:
        for passage in self.passages:
            if len(passage.vector) != self.dimension:
                raise ValueError(
                    f"passage {passage.seq}: vector has {len(passage.vector)} values,"
                    f" dimension is {self.dimension}"
                )
        return self


class PassagesEmbedded(Event):
    """Passages of one conversation (each turn with its neighbours) as vectors, by one model.

    A long conversation's passages come in several events (at most
    ``PASSAGES_PER_EVENT`` each, so an event stays far below the broker's message limit);
    recorded so rebuilds call no model. Dated (``occurred_at``) when the conversation
    began, like the memories found in it: an erasure at or after that covers them."""

    type: Literal["passages.embedded"] = "passages.embedded"
    v: Literal[1] = 1
    data: PassagesEmbeddedData
    topic: ClassVar[str] = "embeddings"
    has_transcript: ClassVar[bool] = True
    period_family: ClassVar[str | None] = TRANSCRIPT_PERIODS


# ---------------------------------------------------------- derived by summarising (summaries)


class SummaryInputs(EventData):
    """What a summary was built from, so it can be traced back to the log."""

    memory_count: int = Field(ge=0)
    """How many memories the text was built from (a platform summary: 0)."""
    memory_ids: tuple[uuid.UUID, ...] = ()
    """Those memories, strongest first."""
    last_event_id: uuid.UUID
    """The newest input event the summary includes: for a profile the last memory event
    of the user the summariser had applied, for a conversation its ``conversation.ended``."""
    as_of: Instant
    """When the newest input began (``Event.began``: a memory's observation, the start of
    a conversation's call); also the summary's own ``occurred_at``. An erasure at or after
    it covers the summary."""


class SummaryGeneratedData(EventData):
    kind: SummaryKind
    """``profile`` (who the user is, from their active memories) or ``conversation``."""
    text: PersonalText
    """The summary; empty only for a profile of a user with no active memory left."""
    generator: NonEmptyStr
    """Which path wrote it: ``extractive``, ``platform`` (the voice platform's own
    summary), or ``llm:<model>``."""
    generator_version: NonEmptyStr
    """Bumped when the same inputs would give another text; for ``platform`` the
    platform's name."""
    conversation_id: Id | None = None
    """The conversation a ``conversation`` summary is about (None for a profile)."""
    sequence: int | None = Field(default=None, ge=1)
    """A profile's number among the user's profiles (1, 2, ...): readers keep the highest,
    whatever order they see them in. None for a conversation summary."""
    inputs: SummaryInputs

    @model_validator(mode="after")
    def _kind_fits(self) -> SummaryGeneratedData:
        if self.kind == "conversation" and not self.conversation_id:
            raise ValueError("a conversation summary needs its conversation_id")
        if self.kind == "profile" and (self.conversation_id is not None or self.sequence is None):
            raise ValueError("a profile has a sequence number and no conversation_id")
        if self.kind == "conversation" and self.sequence is not None:
            raise ValueError("only a profile has a sequence number")
        if self.kind == "conversation" and not str(self.text).strip():
            raise ValueError("a conversation summary needs text")
        return self


class SummaryGenerated(Event):
    """A summary was written: a user's profile or one conversation's summary."""

    type: Literal["summary.generated"] = "summary.generated"
    v: Literal[1] = 1
    data: SummaryGeneratedData
    topic: ClassVar[str] = "summaries"


# ------------------------------------------------------------------ live calls (live)

LiveSignal = Literal[
    "speech-started", "speech-stopped", "status", "user-interrupted", "hang", "conversation-update"
]


class TurnSaidData(EventData):
    conversation_id: ConversationId
    started_at: Instant | None = None
    """When the call began, when the sender says; else the turn's own time stands in."""
    turns: TranscriptJSONArray[tuple[Turn, ...]] = ()
    """What was said: one final turn per event as platforms send them (partials are never
    events). Sealed like a post-call transcript, with the key of the day the call began."""


class TurnSaid(Event):
    """A final turn of a call still going on: what a platform streams mid-call (Vapi
    ``transcript`` with ``transcriptType: final``, or any producer through ``/v1/events``).
    ``occurred_at`` is when it was said. The ``conversation.ended`` report stays the record
    of the call; live events expire with the live topic's retention."""

    type: Literal["turn.said"] = "turn.said"
    v: Literal[1] = 1
    data: TurnSaidData
    topic: ClassVar[str] = "live"
    has_transcript: ClassVar[bool] = True
    period_family: ClassVar[str | None] = TRANSCRIPT_PERIODS

    @property
    def began(self) -> datetime:
        return self.data.started_at or self.occurred_at


class CallSignalledData(EventData):
    conversation_id: ConversationId
    signal: LiveSignal
    """What happened: speech started or stopped (``role`` says whose), a status change
    (``status``), the caller interrupted, the call was hung up, the transcript was updated."""
    role: TurnRole | None = None
    status: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The platform's status for ``status``, e.g. ``ringing``, ``ended``."""
    started_at: Instant | None = None


class CallSignalled(Event):
    """Something happened in a call still going on that is not a turn: it keeps the call
    alive for the live processor (a call with neither live events nor a report for a
    while is reconstructed) and ends it on ``hang`` or an ``ended`` status."""

    type: Literal["call.signalled"] = "call.signalled"
    v: Literal[1] = 1
    data: CallSignalledData
    topic: ClassVar[str] = "live"

    @property
    def began(self) -> datetime:
        return self.data.started_at or self.occurred_at


class PrefetchedHit(EventData):
    """One memory or passage offered to a call, as search returned it."""

    kind: Literal["memory", "passage"]
    id: NonEmptyStr
    """The memory's id, or the passage's ``<conversation id>#<turn seq>``."""
    text: str
    score: float
    said_at: Instant | None = None
    conversation_id: Id | None = None
    turns: tuple[int, ...] = ()
    speaker: Literal["caller", "agent"] | None = None
    """A passage's speaker."""


class ContextPrefetchedData(EventData):
    conversation_id: ConversationId
    started_at: Instant | None = None
    topic: PersonalText
    """The caller's words the search was for (the turn that shifted the topic)."""
    hits: PersonalJSONArray[tuple[PrefetchedHit, ...]] = ()
    """The memories and passages found, best first; personal, sealed as one value."""


class ContextPrefetched(Event):
    """The live processor's prefetch for a call: on a final caller turn that shifted the
    topic, the caller's memories and passages for the new topic, found by the query API's
    search. Derived (its id from the turn's), so a redelivered turn prefetches once."""

    type: Literal["context.prefetched"] = "context.prefetched"
    v: Literal[1] = 1
    data: ContextPrefetchedData
    topic: ClassVar[str] = "live"

    @property
    def began(self) -> datetime:
        return self.data.started_at or self.occurred_at
