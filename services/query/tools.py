"""The memory search as agent tools: what ElevenLabs and Vapi send, and the short text an
agent's LLM reads back (one line per answer, no JSON dumps)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from schemas import PrefetchedHit
from schemas.envelope import MAX_ID_CHARS
from services.errors import ApiError
from services.query.search import Hit

__all__ = [
    "ElevenLabsArguments",
    "ToolCall",
    "VapiToolCalls",
    "answer_text",
    "check_id",
    "check_query",
    "elevenlabs_arguments",
    "prefetched_answer_text",
    "vapi_tool_calls",
]

#: Memories in a tool answer: an agent reads them aloud or reasons over them mid-call.
TOOL_RESULTS = 5
#: Tool calls in one Vapi message: each is a search charged to the key's rate.
MAX_TOOL_CALLS = 16
#: As the REST search's query.
MAX_QUERY_CHARS = 2000
_MAX_ANSWER_CHARS = 800
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def answer_text(query: str, hits: Sequence[Hit]) -> str:
    """One line an agent can use: the memories and passages, dated, best first; or that
    there is none. A passage is quoted with its speaker and, when the agent's question
    before it is what gives it sense ("Friday works"), that question; a memory with the
    best turn that says it, when it was found."""
    if not hits:
        return _nothing_known(query)
    return _known([_hit_text(h) for h in hits[:TOOL_RESULTS]])


def prefetched_answer_text(query: str, hits: Sequence[PrefetchedHit]) -> str:
    """:func:`answer_text` for what the live processor prefetched for the call
    (projections/live.py): a memory's content with its date, a passage as its speaker's
    words with their date. A prefetched hit carries neither the turn that says a memory nor a
    passage's neighbours: only its own text."""
    if not hits:
        return _nothing_known(query)
    return _known([_prefetched_text(h) for h in hits[:TOOL_RESULTS]])


def _nothing_known(query: str) -> str:
    return f'No memories of this caller match "{_one_line(query)}".'


def _known(parts: Sequence[str]) -> str:
    text = "Known about this caller: " + "; ".join(parts) + "."
    if len(text) > _MAX_ANSWER_CHARS:
        text = text[: _MAX_ANSWER_CHARS - 1].rstrip() + "…"
    return text


def _dated(content: str, at: datetime | None, said: str | None = None) -> str:
    """``content (2026-03-04; they said "...")``: what is known, its date and the words
    that said it, each when there is one."""
    notes = "; ".join(n for n in (f"{at:%Y-%m-%d}" if at else None, said) if n)
    return " ".join(p for p in (_one_line(content), f"({notes})" if notes else "") if p)


def _said(speaker: str, text: str) -> str:
    who = "they" if speaker == "caller" else "the agent"
    return f'{who} said "{_one_line(text)}"'


def _hit_text(hit: Hit) -> str:
    if hit.type == "memory":
        # The best turn that says it: the caller's own words carry what the fact leaves out.
        quote = hit.context[0] if hit.context else None
        said = _said(quote["speaker"], quote["text"]) if quote else None
        return _dated(hit.content, hit.observed_at, said)
    said = f'"{_one_line(hit.content)}"'
    asked = [c for c in hit.context if c["seq"] < (hit.turn or 0) and c["speaker"] != hit.speaker]
    if asked and hit.speaker == "caller":
        said = f'asked "{_one_line(asked[-1]["text"])}", they said {said}'
    elif hit.speaker == "caller":
        said = f"they said {said}"
    else:
        said = f"the agent said {said}"
    return f"on {hit.observed_at:%Y-%m-%d} {said}"


def _prefetched_text(hit: PrefetchedHit) -> str:
    if hit.kind == "memory":
        return _dated(hit.text, hit.said_at)
    return _dated("", hit.said_at, _said(hit.speaker or "caller", hit.text))


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class ElevenLabsArguments:
    query: str
    caller_id: str | None
    conversation_id: str | None
    user: str | None


def elevenlabs_arguments(body: Any) -> ElevenLabsArguments:
    """What an ElevenLabs server tool's body says.

    The tool is configured with a body of ``query`` (filled in by the LLM), and
    ``caller_id`` bound to ``{{system__caller_id}}`` and/or ``conversation_id`` bound to
    ``{{system__conversation_id}}``: what the platform binds to the call names the caller.
    ``user`` counts only for a key that allows it (services/query/routes.py, ``bound_subject``).
    """
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_payload", "the body must be a JSON object", path="$")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ApiError(422, "invalid_payload", "query must be a non-empty string", path="query")
    check_query(query, "query")
    names = ("caller_id", "conversation_id", "user")
    values: dict[str, str | None] = {}
    for name in names:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise ApiError(422, "invalid_payload", f"{name} must be a string", path=name)
        values[name] = check_id(value, name, code="invalid_payload")
    if not any(values.values()):
        raise ApiError(
            422,
            "unknown_caller",
            "name the caller: bind caller_id to {{system__caller_id}} (or conversation_id to"
            " {{system__conversation_id}})",
            path="caller_id",
        )
    return ElevenLabsArguments(query=query.strip(), **values)


def check_id(value: str | None, path: str, *, code: str = "invalid_request") -> str | None:
    """An id bound to the call (a conversation id, a caller's number, a user), stripped;
    None when absent or blank. 422 ``code`` over 256 characters or with a control
    character."""
    if value is None:
        return None
    if len(value) > MAX_ID_CHARS or _CONTROL.search(value):
        raise ApiError(
            422,
            code,
            f"{path} is over {MAX_ID_CHARS} characters or holds a control character",
            path=path,
        )
    return value.strip() or None


def _plain_id(value: Any) -> bool:
    return (
        isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and _CONTROL.search(value) is None
    )


def check_query(query: str, path: str) -> None:
    """422 for a query the search cannot take (as the REST search's limits)."""
    if "\x00" in query or len(query) > MAX_QUERY_CHARS:
        raise ApiError(
            422,
            "invalid_payload",
            f"the query is over {MAX_QUERY_CHARS} characters or holds a NUL character",
            path=path,
        )


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class VapiToolCalls:
    """A Vapi ``tool-calls`` message: its calls in order and what Vapi bound to the call."""

    calls: list[ToolCall]
    number: str | None
    call_id: str | None


def vapi_tool_calls(body: Any) -> VapiToolCalls:
    """The tool calls of a Vapi ``tool-calls`` message, in call order; the caller's number
    (``customer.number``) and the call's id (``call.id``).

    Vapi sends ``toolCallList`` [{id, name, arguments}] and/or ``toolWithToolCallList``
    [{toolCall: {id, function: {name, arguments | parameters}}}]; arguments may be an
    object or a JSON string. A call id listed in both is answered once. Each call costs a
    search: a message holds at most :data:`MAX_TOOL_CALLS`.
    """
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict) or message.get("type") != "tool-calls":
        raise ApiError(
            422, "invalid_payload", "expected a Vapi tool-calls message", path="message.type"
        )
    for name in ("toolCallList", "toolWithToolCallList"):
        if not isinstance(message.get(name) or [], list):
            raise ApiError(422, "invalid_payload", f"{name} must be a list", path=f"message.{name}")
        if len(message.get(name) or []) > MAX_TOOL_CALLS:
            raise ApiError(
                422,
                "too_many_tool_calls",
                f"a message holds at most {MAX_TOOL_CALLS} tool calls",
                path=f"message.{name}",
            )
    if not isinstance(message.get("call") or {}, dict):
        raise ApiError(422, "invalid_payload", "call must be an object", path="message.call")
    calls: dict[str, ToolCall] = {}
    for index, raw in enumerate(message.get("toolCallList") or []):
        call = _tool_call(raw, f"message.toolCallList[{index}]")
        calls.setdefault(call.id, call)
    for index, wrapper in enumerate(message.get("toolWithToolCallList") or []):
        path = f"message.toolWithToolCallList[{index}].toolCall"
        raw = wrapper.get("toolCall") if isinstance(wrapper, dict) else None
        call = _tool_call(raw, path)
        calls.setdefault(call.id, call)
    if not calls:
        raise ApiError(422, "invalid_payload", "the message has no tool calls", path="message")
    if len(calls) > MAX_TOOL_CALLS:
        raise ApiError(
            422,
            "too_many_tool_calls",
            f"a message holds at most {MAX_TOOL_CALLS} tool calls",
            path="message",
        )
    number = None
    for holder in (message.get("customer"), (message.get("call") or {}).get("customer")):
        if isinstance(holder, dict) and isinstance(holder.get("number"), str):
            number = holder["number"]
            break
    bound = message.get("call")
    call_id = bound.get("id") if isinstance(bound, dict) else None
    if not _plain_id(call_id):
        call_id = None
    return VapiToolCalls(calls=list(calls.values()), number=number, call_id=call_id)


def _tool_call(raw: Any, path: str) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        raise ApiError(422, "invalid_payload", "a tool call needs a string id", path=f"{path}.id")
    function: dict[str, Any] = raw["function"] if isinstance(raw.get("function"), dict) else {}
    name = raw.get("name") or function.get("name")
    arguments = raw.get("arguments", function.get("arguments", function.get("parameters")))
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            raise ApiError(
                422, "invalid_payload", "arguments is not valid JSON", path=f"{path}.arguments"
            ) from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ApiError(
            422, "invalid_payload", "arguments must be an object", path=f"{path}.arguments"
        )
    return ToolCall(id=raw["id"], name=str(name or ""), arguments=arguments)
