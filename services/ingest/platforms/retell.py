"""Retell AI webhooks, as events.

Every webhook is ``{"event": ..., "call": {...}}``:

- ``call_ended`` and ``call_analyzed`` → one ``conversation.ended`` each. They are
  two deliveries about one call (the second adds ``call_analysis``), so they get
  two event ids, both correlated by the call id; a read model keeps the latest.
- ``call_started`` → one ``conversation.started``, and one ``call.signalled``
  (status ``in-progress``) on the live topic: the call is live (services/live);
- every other event (events added later) → no events.

The transcript is read from ``transcript_object`` (turns with their words'
timing). ``transcript_with_tool_calls`` is not read yet, so Retell turns carry
no tool calls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas import (
    Analysis,
    CallSignalled,
    CallSignalledData,
    ConversationEnded,
    ConversationEndedData,
    ConversationStarted,
    ConversationStartedData,
    Event,
    Turn,
)
from schemas.events import TurnRole
from services.identity import caller_subject
from services.ingest.platforms.exceptions import PayloadError
from services.ingest.platforms.payload import MAX_CALL_SECS, Node
from services.ingest.platforms.transcript import TranscriptBuilder
from services.ingest.platforms.webhook import NormalisedWebhook, platform_event, require_aware

__all__ = ["ENDED_EVENTS", "PLATFORM", "parse_webhook"]

PLATFORM = "retell"
ENDED_EVENTS = frozenset({"call_ended", "call_analyzed"})

_ROLES: dict[str, TurnRole] = {"agent": "agent", "user": "user"}
_ANALYSIS_FIELDS = frozenset({"call_summary", "call_successful", "custom_analysis_data"})
# Call fields mapped to their own place, or transcripts in another form; every
# other field of the call (direction, numbers, disconnection_reason, call_cost,
# latency, the customer's own metadata...) is kept verbatim in the metadata.
_CALL_FIELDS_MAPPED = frozenset(
    {
        "call_id",
        "agent_id",
        "start_timestamp",
        "end_timestamp",
        "transcript",
        "transcript_object",
        "transcript_with_tool_calls",
        "scrubbed_transcript_with_tool_calls",
        "call_analysis",
        "retell_llm_dynamic_variables",
    }
)


def parse_webhook(
    tenant: str,
    body: dict[str, Any],
    *,
    received_at: datetime,
    default_region: str | None = None,
    legacy_ids_before: datetime | None = None,
) -> NormalisedWebhook:
    """Normalise one Retell webhook body (already verified and parsed).

    Raises :class:`PayloadError` when there is no ``event``, or when a
    ``call_ended``/``call_analyzed`` lacks ``call.call_id`` or has a field
    memstream reads of the wrong type. ``legacy_ids_before`` is the tenant's (see
    :func:`.webhook.webhook_event_id`).
    """
    require_aware(received_at)
    if not isinstance(body, dict):
        raise PayloadError("", "the body must be a JSON object")
    root = Node(body)
    event = root["event"].identifier()
    kind = f"{PLATFORM}.{event}"
    call = root["call"]
    if event == "call_started":
        if call.missing:
            raise call.error("is required")
        # New events: no earlier release appended them, so no earlier ids to keep.
        events = _call_started(tenant, call, received_at, default_region)
        return NormalisedWebhook(
            events=events,
            kind=kind,
            conversation_id=events[0].correlation_id,
            subject=events[0].subject,
        )
    if event not in ENDED_EVENTS:
        call_id = call.raw.get("call_id") if isinstance(call.raw, dict) else None
        return NormalisedWebhook(
            events=[],
            kind=kind,
            conversation_id=call_id if isinstance(call_id, str) and call_id.strip() else None,
            subject=None,
        )
    if call.missing:
        raise call.error("is required")
    ended = _call_ended(tenant, event, call, received_at, default_region, legacy_ids_before)
    return NormalisedWebhook(
        events=[ended], kind=kind, conversation_id=ended.correlation_id, subject=ended.subject
    )


def _call_subject(
    tenant: str, call: Node, call_id: str, default_region: str | None
) -> tuple[str, str | None]:
    """The caller's subject and phone number (E.164), as ``caller_subject`` gives them."""
    variables = call["retell_llm_dynamic_variables"]
    # The person the agent talked to: the caller, or the one called on an outbound call.
    outbound = call["direction"].optional_string() == "outbound"
    return caller_subject(
        tenant,
        user_id=variables["user_id"].optional_identifier(integers=True),
        phone=call["to_number" if outbound else "from_number"].optional_string(),
        conversation_id=call_id,
        default_region=default_region,
    )


def _call_started(
    tenant: str, call: Node, received_at: datetime, default_region: str | None
) -> list[Event]:
    call_id = call["call_id"].identifier()
    subject, phone = _call_subject(tenant, call, call_id, default_region)
    started_at = call["start_timestamp"].optional_unix_ms() or received_at
    envelope: dict[str, Any] = {
        "platform": PLATFORM,
        "tenant": tenant,
        "subject": subject,
        "conversation_id": call_id,
        "agent_id": call["agent_id"].optional_identifier(),
        "occurred_at": started_at,
        "received_at": received_at,
    }
    variables = call["retell_llm_dynamic_variables"]
    return [
        platform_event(
            ConversationStarted,
            webhook_type="call_started",
            data=ConversationStartedData(
                conversation_id=call_id,
                caller_phone=phone,
                user_id=variables["user_id"].optional_identifier(integers=True),
                agent_id=envelope["agent_id"],
                dynamic_variables={
                    name: value
                    for name, value in variables.object().items()
                    if value is None or isinstance(value, str | int | float | bool)
                },
                channel="phone" if phone else "unknown",
            ),
            **envelope,
        ),
        platform_event(
            CallSignalled,
            webhook_type="call_started/live",
            data=CallSignalledData(
                conversation_id=call_id,
                signal="status",
                status="in-progress",
                started_at=started_at,
            ),
            **envelope,
        ),
    ]


def _call_ended(
    tenant: str,
    event: str,
    call: Node,
    received_at: datetime,
    default_region: str | None,
    legacy_ids_before: datetime | None,
) -> ConversationEnded:
    call_id = call["call_id"].identifier()
    start_node = call["start_timestamp"]
    end_node = call["end_timestamp"]
    started_at = start_node.optional_unix_ms()
    ended_at = end_node.optional_unix_ms()
    duration: float | None = None
    duration_node = call["duration_ms"]
    if started_at is not None and ended_at is not None:
        if ended_at < started_at:
            raise end_node.error("must not be before call.start_timestamp")
        duration = (ended_at - started_at).total_seconds()
        if duration > MAX_CALL_SECS:
            raise end_node.error("is over a week after call.start_timestamp: longer than any call")
    else:
        duration = duration_node.optional_duration_secs(scale=0.001)
    if started_at is None:
        if ended_at is None or duration is None:
            raise start_node.error("is required (or end_timestamp and duration_ms)")
        started_at = duration_node.shifted(ended_at, -duration)
    if ended_at is None and duration is not None:
        ended_at = duration_node.shifted(started_at, duration)

    variables = call["retell_llm_dynamic_variables"]
    subject, _ = _call_subject(tenant, call, call_id, default_region)

    metadata = call.object_except(_CALL_FIELDS_MAPPED)
    analysis_node = call["call_analysis"]
    analysis_other = analysis_node.object_except(_ANALYSIS_FIELDS)
    if analysis_other:
        metadata["analysis_other"] = analysis_other

    return platform_event(
        ConversationEnded,
        platform=PLATFORM,
        webhook_type=event,
        tenant=tenant,
        subject=subject,
        conversation_id=call_id,
        agent_id=call["agent_id"].optional_identifier(),
        occurred_at=ended_at or started_at,
        received_at=received_at,
        legacy_ids_before=legacy_ids_before,
        data=ConversationEndedData(
            conversation_id=call_id,
            started_at=started_at,
            ended_at=ended_at,
            duration_secs=duration,
            status=call["call_status"].optional_string() or "ended",
            turns=_turns(call["transcript_object"]),
            metadata=metadata,
            analysis=_analysis(analysis_node),
            dynamic_variables=variables.object(),
        ),
    )


def _turns(transcript: Node) -> tuple[Turn, ...]:
    builder = TranscriptBuilder()
    offset_ms = 0
    for entry in transcript.items():
        role = _ROLES[entry["role"].choice(_ROLES)]
        words = entry["words"].items()
        if words:
            # Words carry seconds of audio since the call started; the first one is
            # when the turn began.
            offset_ms = words[0]["start"].offset_ms_from_secs()
        # A turn without words (nothing recognised) keeps the previous turn's
        # offset, so turns stay in order.
        builder.add_turn(role, entry["content"].optional_string() or "", offset_ms)
    return builder.build()


def _analysis(node: Node) -> Analysis | None:
    if node.missing:
        return None
    return Analysis(
        summary=node["call_summary"].optional_string(),
        successful=node["call_successful"].optional_bool(),
        data_collected=node["custom_analysis_data"].object(),
    )
