"""The LLM summariser: profile and conversation summaries from a chat model behind any
OpenAI-compatible endpoint, with the extractive summariser as the fallback path.

:class:`LLMSummariser` implements the :class:`~projections.summaries.summariser.Summariser`
protocol. A profile request carries the user's strongest active memories (the same
selection as the extractive profile: at most
:data:`~projections.summaries.summariser.PROFILE_MEMORIES`, strongest at the profile's
``as_of``), each with its kind, sector and date; a conversation request carries the call
date and every caller/agent turn. Every text is PII-redacted
(``projections.providers.redaction``) before it is sent; the model is asked at
temperature 0 with a fixed seed for structured output (``response_format``
``json_schema``, :data:`ANSWER_SCHEMA`: ``{"summary": "..."}``).

The answer is validated (:func:`parse_answer`) before use: not JSON, not an object with a
``summary`` string, an empty summary, one longer than the extractive bound
(:data:`~projections.summaries.summariser.PROFILE_CHARS` /
:data:`~projections.summaries.summariser.CONVERSATION_CHARS`), more than one paragraph, or
a redaction placeholder in the text is an unusable answer: the call is retried like a
failed one, and when retries run out it counts as a failure for the circuit breaker. The
text kept is the answer with its whitespace folded to single spaces.

Calls go through :class:`~projections.providers.resilience.Resilient` (operation
``summary``: its own breaker, so a model that cannot summarise does not stop
extraction). When it gives up — breaker open, retries exhausted, an error not worth
retrying — the extractive summariser writes the summary, and the returned
:class:`~projections.summaries.summariser.Summary` names it as the generator: each
``summary.generated`` records the path that made it.

The calls are blocking (the synchronous ``openai`` client, and the backoff sleeps), so
they run in the model's own pool of ``MEMSTREAM_PROVIDER_CONCURRENCY`` threads
(:meth:`~projections.providers.openai_client.ChatModel.run_call`; the LLM extractor runs
its batches in its own pool the same way): the processor awaits them from the runtime's
event loop, which keeps serving the consumer's heartbeats meanwhile, and asks for a
batch's summaries together, so up to that many requests are in flight (the runtime's
default pool, which prepares batches, is left alone).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import openai
import orjson
from openai.types.chat import ChatCompletionMessageParam

from projections.providers.exceptions import InvalidAnswer, ProviderUnavailable
from projections.providers.openai_client import ChatModel, structured_answer
from projections.providers.redaction import CARD, EMAIL, PHONE, redact
from projections.providers.resilience import Resilient, fell_back
from projections.summaries.summariser import (
    CONVERSATION_CHARS,
    PROFILE_CHARS,
    ExtractiveSummariser,
    ProfileMemory,
    Summary,
    ranked_memories,
)
from schemas.events import ConversationEndedData

__all__ = [
    "ANSWER_SCHEMA",
    "CONVERSATION_PROMPT",
    "OPERATION",
    "PROFILE_PROMPT",
    "PROMPT_VERSION",
    "LLMSummariser",
    "parse_answer",
]

logger = logging.getLogger(__name__)

#: The summariser's version: a new prompt or schema may give another text.
PROMPT_VERSION = "1"
#: The operation label of metrics and of the circuit breaker.
OPERATION = "summary"

_PLACEHOLDERS = (CARD, EMAIL, PHONE)
_SPEAKERS = ("user", "agent")

PROFILE_PROMPT = f"""\
You write a short profile of a CALLER of a business's voice agent, from what the agent \
remembers about them. The profile is put into the agent's prompt at the start of every \
call with this caller, so it must be accurate and useful to the agent.

Input: a JSON object with "as_of" (ISO date) and "memories", strongest first, each with \
"content", "kind" (fact, identity, preference, habit, plan, event, problem, feeling, or \
asserted: noted by staff), "sector" and "date" (when it was said). Personal data was \
replaced by placeholders such as [phone], [email] and [card]: never write a placeholder.

Write ONE paragraph in the third person, at most {PROFILE_CHARS} characters: who the \
caller is, then what is true about them, what they prefer, what is coming up and what \
went wrong, with dates for events. Use only the memories; do not invent or speculate. \
No lists, no headings, no line breaks.

Answer with a JSON object {{"summary": "..."}} and nothing else."""

CONVERSATION_PROMPT = f"""\
You summarise one finished phone call between a caller (role "user") and a business's \
voice agent (role "agent"), for the agent to read before its next call with the caller.

Input: a JSON object with "call_date" (ISO date) and "turns" (each with "role" and \
"text"). Personal data was replaced by placeholders such as [phone], [email] and [card]: \
never write a placeholder.

Write ONE paragraph, at most {CONVERSATION_CHARS} characters: why the caller called, \
what they said about themselves, and what was agreed or left open. Use only the call; do \
not invent anything. No lists, no headings, no line breaks.

Answer with a JSON object {{"summary": "..."}} and nothing else."""

#: The structured-output schema sent as ``response_format`` (strict mode).
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary"],
    "properties": {"summary": {"type": "string"}},
}


def parse_answer(content: str | None, limit: int) -> str:
    """The summary text of a model's answer, whitespace folded to single spaces.

    Raises :class:`InvalidAnswer` when the answer is unusable: not a JSON object with a
    ``summary`` string, an empty summary, more than ``limit`` characters, more than one
    paragraph, or a redaction placeholder in it (the model wrote "[phone]" instead of
    leaving the number out). The call is then retried like a failed one.
    """
    if not content:
        raise InvalidAnswer("the model's answer has no content")
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise InvalidAnswer(f"the model's answer is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("summary"), str):
        raise InvalidAnswer("the model's answer is not an object with a 'summary' string")
    raw: str = document["summary"].strip()
    # A blank line (or a list, one item a line) is not the one paragraph asked for; a
    # line wrapped inside a sentence is, once folded.
    lines = [line.strip() for line in raw.splitlines()]
    if "" in lines or any(line[:2] in ("- ", "* ", "• ") for line in lines):
        raise InvalidAnswer("the model's summary is not one paragraph")
    text = " ".join(raw.split())
    if not text:
        raise InvalidAnswer("the model's summary is empty")
    if len(text) > limit:
        raise InvalidAnswer(f"the model's summary has {len(text)} characters, over {limit}")
    if any(p in text for p in _PLACEHOLDERS):
        raise InvalidAnswer("the model's summary carries a redaction placeholder")
    return text


class LLMSummariser(ChatModel):
    """Summaries from a chat model, with the extractive summariser as the fallback path."""

    role = "LLM summariser"
    operation = OPERATION
    prompt_version = PROMPT_VERSION
    thread_name_prefix = "summary"

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        calls: Resilient | None = None,
        fallback: ExtractiveSummariser | None = None,
        concurrency: int = 4,
    ) -> None:
        super().__init__(client, model, calls=calls, concurrency=concurrency)
        self.fallback = fallback or ExtractiveSummariser()

    async def profile(self, memories: Sequence[ProfileMemory], as_of: datetime) -> Summary:
        ranked = ranked_memories(memories, as_of)
        if not ranked:
            # Nothing known (every memory retracted): the extractive empty profile, no call
            # to pay for, recorded as the extractive summariser's.
            return self._offline(self.fallback.profile_now(memories, as_of))
        return await self._in_pool(
            lambda: self._ask(self.profile_request(ranked, as_of), PROFILE_CHARS),
            lambda: self.fallback.profile_now(memories, as_of),
            tuple(m.memory_id for m in ranked),
        )

    async def conversation(self, conversation: ConversationEndedData) -> Summary | None:
        # The extractive gate decides whether a call said anything worth a summary, so
        # both paths agree on which calls get one, and chatter costs no call.
        offline = self.fallback.conversation_now(conversation)
        if offline is None:
            return None
        return await self._in_pool(
            lambda: self._ask(self.conversation_request(conversation), CONVERSATION_CHARS),
            lambda: offline,
            (),
        )

    def profile_request(
        self, memories: Sequence[ProfileMemory], as_of: datetime
    ) -> list[ChatCompletionMessageParam]:
        """The chat messages sent for a profile (PII redacted)."""
        document = {
            "as_of": as_of.date().isoformat(),
            "memories": [
                {
                    "content": redact(" ".join(m.content.split())),
                    "kind": m.kind,
                    "sector": m.sector,
                    "date": m.observed_at.date().isoformat(),
                }
                for m in memories
            ],
        }
        return [
            {"role": "system", "content": PROFILE_PROMPT},
            {"role": "user", "content": orjson.dumps(document).decode()},
        ]

    def conversation_request(
        self, conversation: ConversationEndedData
    ) -> list[ChatCompletionMessageParam]:
        """The chat messages sent for a conversation (PII redacted)."""
        document = {
            "call_date": conversation.started_at.date().isoformat(),
            "turns": [
                {"role": turn.role, "text": redact(str(turn.text))}
                for turn in conversation.turns
                if turn.role in _SPEAKERS and str(turn.text).strip()
            ],
        }
        return [
            {"role": "system", "content": CONVERSATION_PROMPT},
            {"role": "user", "content": orjson.dumps(document).decode()},
        ]

    async def _in_pool(
        self,
        ask: Callable[[], str],
        offline: Callable[[], Summary],
        memory_ids: tuple[uuid.UUID, ...],
    ) -> Summary:
        # In the model's pool (ChatModel.run_call), also with concurrency 1: the call
        # blocks, and the event loop must not.
        return await self.run_call(lambda: self._summarise(ask, offline, memory_ids))

    def _summarise(
        self,
        ask: Callable[[], str],
        offline: Callable[[], Summary],
        memory_ids: tuple[uuid.UUID, ...],
    ) -> Summary:
        """The model's summary, or the fallback's (which says so) when it is unavailable."""
        try:
            text = self.calls.call(ask)
        except ProviderUnavailable as exc:
            fell_back(exc)
            logger.warning(
                "LLM summary unavailable (%s); using the %s summariser", exc, self.fallback.name
            )
            return self._offline(offline())
        return Summary(text, memory_ids, generator=self.name, generator_version=self.version)

    def _offline(self, summary: Summary) -> Summary:
        """``summary`` (the fallback's) recorded as the fallback's."""
        return Summary(
            summary.text,
            summary.memory_ids,
            generator=self.fallback.name,
            generator_version=self.fallback.version,
        )

    def _ask(self, messages: list[ChatCompletionMessageParam], limit: int) -> str:
        content = structured_answer(self.client, self.model, messages, "summary", ANSWER_SCHEMA)
        return parse_answer(content, limit)
