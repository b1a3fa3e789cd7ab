"""The LLM extractor: memories from a chat model behind any OpenAI-compatible endpoint.

:class:`LLMExtractor` sends one conversation per request — the call date, then every turn
with its index and role, each turn's text PII-redacted (``projections.providers.redaction``)
— with a system prompt (:data:`SYSTEM_PROMPT`) that defines sectors, kinds, salience and
slot keys exactly as the rule-based extractor uses them, and asks for structured output
(``response_format`` ``json_schema``, :data:`ANSWER_SCHEMA`) at temperature 0 with a fixed
seed.

The answer is validated before use (:func:`parse_answer`): an answer that is not a JSON
object with a ``memories`` list is a failed call (retried: a second answer may be
well-formed); each memory that does not validate (unknown sector or kind, salience out
of range, no content, a turn index outside the transcript, a redaction placeholder in its
content) is dropped and counted. Then the rule-based extractor's conventions apply:
content without a trailing period, one candidate per normalised content (turns merged),
the latest value per slot.

Calls go through :class:`~projections.providers.resilience.Resilient` (timeout, retries
with backoff and jitter, circuit breaker). When it gives up — breaker open, retries
exhausted, an error not worth retrying — the conversation is extracted by the fallback
(the rule-based extractor), and the :class:`Extraction` says so: each memory event records
the path that produced it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import openai
import orjson
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from projections.extraction.candidates import (
    KINDS,
    Candidate,
    Extraction,
    Extractor,
    is_partial,
    normalise_content,
)
from projections.extraction.rules import RuleExtractor
from projections.providers.exceptions import InvalidAnswer, ProviderUnavailable
from projections.providers.metrics import INVALID_ITEMS
from projections.providers.openai_client import PROVIDER, ChatModel, structured_answer
from projections.providers.redaction import CARD, EMAIL, PHONE, redact
from projections.providers.resilience import Resilient, fell_back
from schemas.events import ConversationEndedData

__all__ = ["ANSWER_SCHEMA", "PROMPT_VERSION", "SYSTEM_PROMPT", "LLMExtractor", "parse_answer"]

logger = logging.getLogger(__name__)

#: Part of the extractor version: a new prompt or schema may give other memories.
PROMPT_VERSION = "1"
#: The operation label of metrics and of the circuit breaker.
OPERATION = "chat"

_PLACEHOLDERS = (CARD, EMAIL, PHONE)
_SPEAKERS = ("user", "agent")
_MAX_CONTENT = 300

SYSTEM_PROMPT = """\
You extract long-term memories about the CALLER from one finished phone call between a \
caller (role "user") and a voice agent (role "agent"). The memories help the agent \
personalise future calls with the same caller.

Input: a JSON object with "call_date" (ISO date) and "turns" (each with "index", "role", \
"text"). Personal data in the text was replaced by placeholders such as [phone], [email] \
and [card]: never write a memory whose content contains a placeholder.

Extract only what the caller said or confirmed about themselves (and what the agent \
confirmed doing for them, e.g. a booking). Ignore greetings, thanks, questions the caller \
asked, and facts about the agent or the business. Do not invent anything.

Each memory has:
- "content": concise, in the third person about the caller, without a subject and without \
a trailing period, e.g. "Allergic to penicillin", "Lives in Denver", "Prefers morning \
appointments", "Name: Daniel Okafor", "Cleaning booked for Tuesday at 3pm". At most 300 \
characters.
- "sector": "semantic" for facts, preferences and identity; "episodic" for events, \
appointments, plans and problems; "procedural" for habits and how the caller likes things \
done; "emotional" for feelings; "reflective" for the caller's own decisions, goals and \
realisations.
- "kind": one of "fact", "preference", "plan", "problem", "feeling", "habit", "event", \
"identity".
- "salience" (0 to 1): health (allergies, conditions, medication) 0.9; identity (name, \
date of birth, contact details) 0.8; appointments and other events 0.7; life facts (home, \
work, family) 0.7; preferences 0.6; plans 0.6; problems 0.6; goals, decisions, \
realisations 0.6; feelings 0.5; habits 0.5. Add 0.05 when the caller stressed it ("really", \
"very important"), and 0.05 when it was said in more than one turn; never above 1.
- "key": a slot name for facts where a new value replaces the old one, else null. Use \
these when they fit: "name", "date_of_birth", "email", "phone", "address", "home_city", \
"insurance", "employer", "occupation"; another lowercase snake_case name only for a \
similar single-valued slot.
- "turns": the indices of the turns the memory comes from, ascending.

Answer with a JSON object {"memories": [...]} and nothing else; an empty list when the \
call says nothing worth remembering about the caller."""

#: The structured-output schema sent as ``response_format`` (strict mode: every property
#: required, no others).
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["memories"],
    "properties": {
        "memories": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["content", "sector", "kind", "salience", "key", "turns"],
                "properties": {
                    "content": {"type": "string"},
                    "sector": {
                        "type": "string",
                        "enum": ["semantic", "episodic", "procedural", "emotional", "reflective"],
                    },
                    "kind": {"type": "string", "enum": sorted(KINDS)},
                    "salience": {"type": "number"},
                    "key": {"type": ["string", "null"]},
                    "turns": {"type": "array", "items": {"type": "integer"}},
                },
            },
        }
    },
}


class _Memory(BaseModel):
    """One memory of the model's answer, as the schema asks for it."""

    model_config = ConfigDict(extra="ignore", strict=False)

    content: str = Field(min_length=1)
    sector: Literal["semantic", "episodic", "procedural", "emotional", "reflective"]
    kind: str
    salience: float = Field(ge=0.0, le=1.0)
    key: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,63}$")
    turns: list[int] = Field(min_length=1)

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        value = value.strip().rstrip(".").strip()
        if not value or len(value) > _MAX_CONTENT:
            raise ValueError(f"content must be 1..{_MAX_CONTENT} characters")
        if any(p in value for p in _PLACEHOLDERS):
            raise ValueError("content carries a redaction placeholder, not the fact")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"kind {value!r} is not one of {sorted(KINDS)}")
        return value


def parse_answer(content: str | None, turn_count: int) -> tuple[list[Candidate], int]:
    """The candidates of a model's answer, and how many of its memories were dropped.

    Raises :class:`InvalidAnswer` when the answer as a whole is unusable (not JSON, not an
    object with a ``memories`` list): the call is then retried like a failed one.
    """
    if not content:
        raise InvalidAnswer("the model's answer has no content")
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise InvalidAnswer(f"the model's answer is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("memories"), list):
        raise InvalidAnswer("the model's answer is not an object with a 'memories' list")
    dropped = 0
    # Merged as the rule-based extractor does: one candidate per normalised content (its
    # turns united), and one value per slot, the one said last.
    by_content: dict[str, Candidate] = {}
    for item in document["memories"]:
        try:
            memory = _Memory.model_validate(item)
        except ValidationError as exc:
            dropped += 1
            logger.debug("dropped an invalid memory from the model's answer: %s", exc)
            continue
        turns = sorted(set(memory.turns))
        if turns[0] < 0 or turns[-1] >= turn_count:
            dropped += 1
            logger.debug("dropped a memory citing turns %s of %d", turns, turn_count)
            continue
        normalised = normalise_content(memory.content)
        if not normalised:
            dropped += 1
            continue
        earlier = by_content.get(normalised)
        if earlier is not None:
            turns = sorted({*earlier.turns, *turns})
        by_content[normalised] = Candidate(
            content=earlier.content if earlier is not None else memory.content,
            sector=memory.sector,
            salience=max(memory.salience, earlier.salience if earlier else 0.0),
            kind=memory.kind,
            key=memory.key,
            turns=tuple(turns),
        )
    latest_per_key: dict[str, str] = {}
    for normalised, candidate in by_content.items():
        if candidate.key is None:
            continue
        held = latest_per_key.get(candidate.key)
        if held is not None and is_partial(candidate.content, by_content[held].content):
            continue  # only part of the value already held ("Name: Maria" of "Maria Lopez")
        if (
            held is None
            or by_content[held].turns[-1] <= candidate.turns[-1]
            or is_partial(by_content[held].content, candidate.content)
        ):
            latest_per_key[candidate.key] = normalised
    kept = [c for n, c in by_content.items() if c.key is None or latest_per_key[c.key] == n]
    return kept, dropped


class LLMExtractor(ChatModel):
    """Memories from a chat model, with the rule-based extractor as the fallback path."""

    deterministic = False
    role = "LLM extractor"
    operation = OPERATION
    prompt_version = PROMPT_VERSION
    thread_name_prefix = "llm"

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        calls: Resilient | None = None,
        fallback: Extractor | None = None,
        concurrency: int = 4,
    ) -> None:
        super().__init__(client, model, calls=calls, concurrency=concurrency)
        self.fallback: Extractor = fallback or RuleExtractor()

    def extract(self, conversation: ConversationEndedData) -> Extraction:
        """The model's memories, or the fallback's when the model is unavailable."""
        if not any(t.role == "user" and str(t.text).strip() for t in conversation.turns):
            # Nothing the caller said: no memory about them, and no call to pay for.
            return Extraction((), self.name, self.version)
        try:
            candidates = self.calls.call(lambda: self._ask(conversation))
        except ProviderUnavailable as exc:
            fell_back(exc)
            logger.warning(
                "LLM extraction unavailable (%s); using the %s extractor", exc, self.fallback.name
            )
            return self.fallback.extract(conversation)
        return Extraction(tuple(candidates), self.name, self.version)

    def extract_many(self, conversations: Sequence[ConversationEndedData]) -> list[Extraction]:
        """One extraction per conversation, in order, the model asked for up to
        ``concurrency`` at a time in its pool (the calls wait on the network, not on the
        CPU); one conversation, or ``concurrency == 1``, is extracted inline."""
        return self.map_calls(self.extract, conversations)

    def request(self, conversation: ConversationEndedData) -> list[ChatCompletionMessageParam]:
        """The chat messages sent for a conversation (PII redacted)."""
        transcript = {
            "call_date": conversation.started_at.date().isoformat(),
            "turns": [
                {"index": index, "role": turn.role, "text": redact(str(turn.text))}
                for index, turn in enumerate(conversation.turns)
                if turn.role in _SPEAKERS and str(turn.text).strip()
            ],
        }
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": orjson.dumps(transcript).decode()},
        ]

    def _ask(self, conversation: ConversationEndedData) -> list[Candidate]:
        content = structured_answer(
            self.client, self.model, self.request(conversation), "memories", ANSWER_SCHEMA
        )
        candidates, dropped = parse_answer(content, len(conversation.turns))
        if dropped:
            INVALID_ITEMS.labels(PROVIDER, OPERATION).inc(dropped)
            logger.info("dropped %d invalid memories from the model's answer", dropped)
        return candidates
