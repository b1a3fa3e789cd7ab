"""Vapi server messages, as events.

Every message is ``{"message": {"type": ..., "call": {...}, ...}}``, dispatched on ``type``:

- ``end-of-call-report`` → one ``conversation.ended`` (transcript, analysis, cost...);
- ``status-update`` with status ``in-progress`` → one ``conversation.started``; every
  other status, ``ended`` included, gives nothing: the end-of-call-report that
  follows carries the transcript and everything else about the end;
- ``assistant-request`` → one ``conversation.started`` (the call is ringing; the
  HTTP layer also has to answer it, within about 5 s);
- mid-call messages → one event on the live topic (services/live reads it):
  ``transcript`` with ``transcriptType: final`` → ``turn.said`` (partials → nothing);
  ``speech-update``, ``user-interrupted``, ``hang``, ``conversation-update`` and every
  ``status-update`` (``in-progress`` as well as its ``conversation.started``) →
  ``call.signalled``;
- every other type (the ``tool-calls`` and other requests whose replies the HTTP layer
  builds, types added later) → no events.

A live event's id is derived from the call, the message type and what identifies the
message within the call (its role, time and text), so a redelivered message is the
same event and two messages are two events.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from schemas import (
    Analysis,
    CallSignalled,
    CallSignalledData,
    ConversationEnded,
    ConversationEndedData,
    ConversationStarted,
    ConversationStartedData,
    Turn,
    TurnSaid,
    TurnSaidData,
)
from schemas.events import Channel, LiveSignal, TurnRole
from services.identity import caller_subject
from services.ingest.platforms.exceptions import PayloadError
from services.ingest.platforms.payload import (
    MAX_CALL_SECS,
    Node,
    tool_arguments,
    tool_result_text,
)
from services.ingest.platforms.transcript import PendingTurn, TranscriptBuilder
from services.ingest.platforms.webhook import NormalisedWebhook, platform_event, require_aware

__all__ = ["PLATFORM", "parse_server_message"]

logger = logging.getLogger(__name__)

PLATFORM = "vapi"

_ROLES: dict[str, TurnRole] = {
    "bot": "agent",
    # Vapi's OpenAI-formatted copy of the transcript says "assistant" for "bot".
    "assistant": "agent",
    "user": "user",
    "system": "system",
    "tool_calls": "tool",
    "tool_call_result": "tool",
}
# Labels of the one-string transcript, the last resort when no messages are sent.
_TRANSCRIPT_LABELS: dict[str, TurnRole] = {"AI": "agent", "Bot": "agent", "User": "user"}

_PASSED = frozenset({"true", "pass", "passed", "success", "successful", "yes"})
_FAILED = frozenset({"false", "fail", "failed", "failure", "unsuccessful", "no"})
_ANALYSIS_FIELDS = frozenset({"summary", "structuredData", "successEvaluation"})

# end-of-call-report fields mapped to their own place; every other field of the
# message is kept verbatim in the metadata (endedReason, cost, costBreakdown...).
_REPORT_FIELDS_MAPPED = frozenset(
    {
        "type",
        "timestamp",
        "call",
        "customer",
        "phoneNumber",
        "assistant",
        "artifact",
        "analysis",
        "messages",
        "messagesOpenAIFormatted",
        "transcript",
        "summary",
        "startedAt",
        "endedAt",
    }
)
_ARTIFACT_FIELDS_MAPPED = frozenset({"messages", "messagesOpenAIFormatted", "transcript"})
# Only these parts of the call and phone-number objects are kept: the rest is
# configuration (the whole assistant, and for imported numbers the provider's
# credentials), which has no place in a log kept forever.
_CALL_FIELDS_KEPT = ("id", "orgId", "type", "status", "phoneNumberId", "assistantId")
_PHONE_NUMBER_FIELDS_KEPT = ("id", "number", "provider")


def parse_server_message(
    tenant: str,
    body: dict[str, Any],
    *,
    received_at: datetime,
    default_region: str | None = None,
    legacy_ids_before: datetime | None = None,
) -> NormalisedWebhook:
    """Normalise one Vapi server message (already authenticated and parsed).

    Raises :class:`PayloadError` when there is no ``message`` with a ``type``, or
    when a message that produces an event lacks ``message.call.id`` or has a field
    memstream reads of the wrong type. Messages that produce no event are not
    checked beyond their type. ``default_region`` places customer numbers written
    without a country code; ``legacy_ids_before`` is the tenant's (see
    :func:`.webhook.webhook_event_id`).
    """
    require_aware(received_at)
    if not isinstance(body, dict):
        raise PayloadError("", "the body must be a JSON object")
    message = Node(body)["message"]
    if message.missing:
        raise message.error("is required")
    message_type = message["type"].identifier()
    kind = f"{PLATFORM}.{message_type}"

    if message_type == "end-of-call-report":
        ended = _end_of_call_report(tenant, message, received_at, default_region, legacy_ids_before)
        return NormalisedWebhook(
            events=[ended], kind=kind, conversation_id=ended.correlation_id, subject=ended.subject
        )
    events: list[Any] = []
    if message_type == "assistant-request" or (
        message_type == "status-update" and message["status"].optional_string() == "in-progress"
    ):
        events.append(
            _started(tenant, message, message_type, received_at, default_region, legacy_ids_before)
        )
    live = _live(tenant, message, message_type, received_at, default_region)
    if live is not None:
        events.append(live)
    if events:
        return NormalisedWebhook(
            events=events,
            kind=kind,
            conversation_id=events[0].correlation_id,
            subject=events[0].subject,
        )
    return NormalisedWebhook(
        events=[], kind=kind, conversation_id=_call_id_if_any(message), subject=None
    )


# ------------------------------------------------------------------------ live messages

_SIGNALS: dict[str, LiveSignal] = {
    "status-update": "status",
    "user-interrupted": "user-interrupted",
    "hang": "hang",
    "conversation-update": "conversation-update",
}


def _live(
    tenant: str,
    message: Node,
    message_type: str,
    received_at: datetime,
    default_region: str | None,
) -> TurnSaid | CallSignalled | None:
    """The live-topic event of a mid-call message, None for a message that has none (a
    partial transcript, an empty one, a type that is not mid-call)."""
    if message_type not in _SIGNALS and message_type not in ("transcript", "speech-update"):
        return None
    try:
        return _live_event(tenant, message, message_type, received_at, default_region)
    except PayloadError as exc:
        # Mid-call messages are signals, not the record of the call (the report is): one
        # that cannot be read is acknowledged without an event, as before live events.
        logger.info("vapi %s message without a live event: %s", message_type, exc)
        return None


def _live_event(
    tenant: str,
    message: Node,
    message_type: str,
    received_at: datetime,
    default_region: str | None,
) -> TurnSaid | CallSignalled | None:
    if message_type == "transcript":
        if message["transcriptType"].optional_string() != "final":
            return None
        text = (message["transcript"].optional_string() or "").strip()
        role = _ROLES.get(message["role"].optional_string() or "")
        if not text or role not in ("user", "agent"):
            return None
    elif message_type == "speech-update" and message["status"].optional_string() not in (
        "started",
        "stopped",
    ):
        return None
    call = message["call"]
    call_id = call["id"].identifier()
    subject, _ = _subject(tenant, message, call_id, default_region)
    started_at = call["startedAt"].optional_instant()
    occurred_at = message["timestamp"].optional_instant() or received_at
    envelope: dict[str, Any] = {
        "platform": PLATFORM,
        "tenant": tenant,
        "subject": subject,
        "conversation_id": call_id,
        "agent_id": _agent_id(message),
        "occurred_at": occurred_at,
        "received_at": received_at,
    }
    at_ms = round(occurred_at.timestamp() * 1000)
    if message_type == "transcript":
        offset = (occurred_at - started_at) // timedelta(milliseconds=1) if started_at else 0
        if offset > MAX_CALL_SECS * 1000:
            raise message["timestamp"].error(
                "is over a week after call.startedAt: longer than any call"
            )
        return platform_event(
            TurnSaid,
            webhook_type=f"transcript/{role}/{at_ms}/{_digest(text)}",
            data=TurnSaidData(
                conversation_id=call_id,
                started_at=started_at,
                turns=(Turn(role=role, text=text, offset_ms=max(offset, 0)),),
            ),
            **envelope,
        )
    signal: LiveSignal
    signal_role: TurnRole | None = None
    status: str | None = None
    if message_type == "speech-update":
        signal = (
            "speech-started"
            if message["status"].optional_string() == "started"
            else "speech-stopped"
        )
        signal_role = _ROLES.get(message["role"].optional_string() or "")
    else:
        signal = _SIGNALS[message_type]
        if signal == "status":
            status = (message["status"].optional_string() or "")[:64] or None
    return platform_event(
        CallSignalled,
        webhook_type=f"{message_type}/{signal_role or ''}/{status or ''}/{at_ms}",
        data=CallSignalledData(
            conversation_id=call_id,
            signal=signal,
            role=signal_role,
            status=status,
            started_at=started_at,
        ),
        **envelope,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------ helpers


def _call_id_if_any(message: Node) -> str | None:
    # Informational messages are acknowledged whatever their shape: only their
    # call id is read, and only if it is where it should be.
    call = message.raw.get("call") if isinstance(message.raw, dict) else None
    call_id = call.get("id") if isinstance(call, dict) else None
    return call_id if isinstance(call_id, str) and call_id.strip() else None


def _customer_number(message: Node) -> str | None:
    return (
        message["call"]["customer"]["number"].optional_string()
        or message["customer"]["number"].optional_string()
    )


def _variables(message: Node) -> Node:
    # The values the call's assistant was started with ({{name}} in its prompts).
    return message["call"]["assistantOverrides"]["variableValues"]


def _subject(
    tenant: str, message: Node, call_id: str, default_region: str | None
) -> tuple[str, str | None]:
    return caller_subject(
        tenant,
        user_id=_variables(message)["user_id"].optional_identifier(integers=True),
        phone=_customer_number(message),
        conversation_id=call_id,
        default_region=default_region,
    )


def _agent_id(message: Node) -> str | None:
    return (
        message["call"]["assistantId"].optional_identifier()
        or message["assistant"]["id"].optional_identifier()
    )


def _channel(call: Node, caller_phone: str | None) -> Channel:
    call_type = call["type"].optional_string()
    if call_type in ("inboundPhoneCall", "outboundPhoneCall"):
        return "phone"
    if call_type == "webCall":
        return "web"
    return "phone" if caller_phone is not None else "unknown"


def _started(
    tenant: str,
    message: Node,
    message_type: str,
    received_at: datetime,
    default_region: str | None,
    legacy_ids_before: datetime | None,
) -> ConversationStarted:
    call = message["call"]
    call_id = call["id"].identifier()
    subject, caller_phone = _subject(tenant, message, call_id, default_region)
    occurred_at = (
        message["timestamp"].optional_instant()
        or call["startedAt"].optional_instant()
        or received_at
    )
    agent_id = _agent_id(message)
    return platform_event(
        ConversationStarted,
        platform=PLATFORM,
        webhook_type=message_type,
        tenant=tenant,
        subject=subject,
        conversation_id=call_id,
        agent_id=agent_id,
        occurred_at=occurred_at,
        received_at=received_at,
        legacy_ids_before=legacy_ids_before,
        data=ConversationStartedData(
            conversation_id=call_id,
            caller_phone=caller_phone,
            user_id=_variables(message)["user_id"].optional_identifier(integers=True),
            agent_id=agent_id,
            dynamic_variables=_scalar_variables(_variables(message).object()),
            channel=_channel(call, caller_phone),
        ),
    )


def _scalar_variables(variables: dict[str, Any]) -> dict[str, str | int | float | bool | None]:
    # conversation.started holds only scalar variables; a nested value is kept as JSON text.
    scalars: dict[str, str | int | float | bool | None] = {}
    for name, value in variables.items():
        if value is None or isinstance(value, str | int | float | bool):
            scalars[name] = value
        else:
            scalars[name] = tool_result_text(Node(value, f"variableValues.{name}"))
    return scalars


def _end_of_call_report(
    tenant: str,
    message: Node,
    received_at: datetime,
    default_region: str | None,
    legacy_ids_before: datetime | None,
) -> ConversationEnded:
    call = message["call"]
    call_id = call["id"].identifier()
    artifact = message["artifact"]

    started_node = message["startedAt"]
    started_at = started_node.optional_instant() or call["startedAt"].optional_instant()
    ended_node = call["endedAt"] if message["endedAt"].missing else message["endedAt"]
    ended_at = ended_node.optional_instant()
    duration = _duration_secs(message, started_at, ended_at, ended_node)
    if started_at is None:
        if ended_at is None or duration is None:
            raise started_node.error("is required (or endedAt and durationSeconds)")
        started_at = message.first("durationSeconds", "durationMs").shifted(ended_at, -duration)

    subject, _ = _subject(tenant, message, call_id, default_region)

    metadata = message.object_except(_REPORT_FIELDS_MAPPED)
    artifact_other = artifact.object_except(_ARTIFACT_FIELDS_MAPPED)
    if artifact_other:
        metadata["artifact"] = artifact_other
    for name, node, kept in (
        ("call", call, _CALL_FIELDS_KEPT),
        ("phoneNumber", message["phoneNumber"], _PHONE_NUMBER_FIELDS_KEPT),
    ):
        subset = {key: node[key].verbatim() for key in kept if not node[key].missing}
        if subset:
            metadata[name] = subset
    customer = message["customer"].object() or call["customer"].object()
    if customer:
        metadata["customer"] = customer
    analysis_node = message["analysis"]
    analysis_other = analysis_node.object_except(_ANALYSIS_FIELDS)
    if analysis_other:
        metadata["analysis_other"] = analysis_other

    ended_reason = message["endedReason"].optional_string()
    return platform_event(
        ConversationEnded,
        platform=PLATFORM,
        webhook_type="end-of-call-report",
        tenant=tenant,
        subject=subject,
        conversation_id=call_id,
        agent_id=_agent_id(message),
        occurred_at=ended_at or message["timestamp"].optional_instant() or started_at,
        received_at=received_at,
        legacy_ids_before=legacy_ids_before,
        data=ConversationEndedData(
            conversation_id=call_id,
            started_at=started_at,
            ended_at=ended_at,
            duration_secs=duration,
            # Vapi's only final status is "ended"; why it ended is what tells calls apart.
            status=ended_reason or call["status"].optional_string() or "ended",
            turns=_turns(message, artifact, started_at),
            metadata=metadata,
            analysis=_analysis(message, analysis_node),
            dynamic_variables=_variables(message).object(),
        ),
    )


def _duration_secs(
    message: Node, started_at: datetime | None, ended_at: datetime | None, ended_node: Node
) -> float | None:
    for name, scale in (("durationSeconds", 1.0), ("durationMs", 0.001)):
        value = message[name].optional_duration_secs(scale)
        if value is not None:
            return value
    if started_at is not None and ended_at is not None and ended_at >= started_at:
        duration = (ended_at - started_at).total_seconds()
        if duration > MAX_CALL_SECS:
            raise ended_node.error("is over a week after startedAt: longer than any call")
        return duration
    return None


def _turns(message: Node, artifact: Node, started_at: datetime) -> tuple[Turn, ...]:
    # artifact first; some senders put the transcript at the top of the message.
    for messages in (artifact["messages"], message["messages"]):
        entries = messages.items()
        if entries:
            return _turns_from_messages(entries, started_at)
    for transcript in (artifact["transcript"], message["transcript"]):
        text = transcript.optional_string()
        if text:
            return _turns_from_text(text)
    return ()


def _turns_from_messages(entries: list[Node], started_at: datetime) -> tuple[Turn, ...]:
    builder = TranscriptBuilder()
    for entry in entries:
        role = entry["role"].choice(_ROLES)
        offset_ms = _offset_ms(entry, started_at)
        if role == "tool_call_result":
            result = tool_result_text(entry["result"])
            # Joined to its call (one ToolCall holds call and result); a result
            # whose call is not in the transcript becomes a tool turn of its own.
            joined = builder.add_result(
                None, call_id=entry["toolCallId"].optional_identifier(), result=result
            )
            if not joined:
                orphan = builder.add_turn("tool", "", offset_ms)
                builder.add_unmatched_result(
                    orphan, name=entry["name"].optional_string() or "", result=result
                )
            continue
        turn = builder.add_turn(_ROLES[role], entry["message"].optional_string() or "", offset_ms)
        if role == "tool_calls":
            _add_tool_calls(builder, turn, entry["toolCalls"])
    return builder.build()


def _add_tool_calls(builder: TranscriptBuilder, turn: PendingTurn, calls: Node) -> None:
    for call in calls.items():
        # OpenAI's shape {id, function: {name, arguments}}, or the flat one of
        # tool-calls requests {id, name, arguments}.
        function = call["function"]
        spec = call if function.missing else function
        builder.add_call(
            turn,
            call_id=call["id"].optional_identifier(),
            name=spec["name"].string(),
            arguments=tool_arguments(spec.first("arguments", "parameters")),
        )


def _offset_ms(entry: Node, started_at: datetime) -> int:
    seconds = entry["secondsFromStart"]
    if not seconds.missing:
        return seconds.offset_ms_from_secs()
    time = entry["time"]
    if not time.missing:
        return time.offset_ms_from_ms(started_at)
    raise seconds.error("is required (or time)")


def _turns_from_text(text: str) -> tuple[Turn, ...]:
    """Turns from the one-string transcript (``AI: ...\\nUser: ...``); timing unknown, so 0."""
    builder = TranscriptBuilder()
    current: PendingTurn | None = None
    for line in text.splitlines():
        label, separator, said = line.partition(":")
        role = _TRANSCRIPT_LABELS.get(label.strip()) if separator else None
        if role is not None:
            current = builder.add_turn(role, said.strip(), 0)
        elif current is not None:
            if line.strip():  # a line break inside what was said
                current.text = f"{current.text}\n{line.strip()}"
        elif line.strip():
            current = builder.add_turn("system", line.strip(), 0)
    return builder.build()


def _analysis(message: Node, analysis: Node) -> Analysis | None:
    summary = analysis["summary"].optional_string()
    if summary is None:
        summary = message["summary"].optional_string()
    if analysis.missing and summary is None:
        return None
    structured = analysis["structuredData"]
    success = analysis["successEvaluation"]
    return Analysis(
        summary=summary,
        successful=_successful(success.raw),
        data_collected=(
            structured.object()
            if isinstance(structured.raw, dict) or structured.missing
            else {"value": structured.verbatim()}
        ),
        # The evaluation as Vapi sent it: a rubric's score is not a yes or a no.
        evaluation={} if success.missing else {"successEvaluation": success.verbatim()},
    )


def _successful(verdict: object) -> bool | None:
    """A pass/fail rubric's verdict; None for scores and grades, which are not a yes or a no."""
    if isinstance(verdict, bool):
        return verdict
    if isinstance(verdict, str):
        word = verdict.strip().lower()
        if word in _PASSED:
            return True
        if word in _FAILED:
            return False
    return None
