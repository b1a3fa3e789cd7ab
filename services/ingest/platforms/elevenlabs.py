"""ElevenLabs Agents: post-call webhooks and the conversation-initiation webhook, as events.

- ``post_call_transcription`` → one ``conversation.ended`` (transcript, metadata, analysis);
- ``call_initiation_failure`` → one ``conversation.failed``;
- ``post_call_audio`` → nothing: memstream does not keep audio, the webhook is
  only checked for a conversation id and acknowledged;
- the conversation-initiation webhook (an inbound phone call is ringing) →
  one ``conversation.started``, see :func:`parse_initiation`.

Signatures are checked before these functions run, on the raw bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas import (
    Analysis,
    ConversationEnded,
    ConversationEndedData,
    ConversationFailed,
    ConversationFailedData,
    ConversationStarted,
    ConversationStartedData,
    Turn,
    utc_now,
)
from schemas.events import TurnRole
from services.identity import caller_subject, normalise_phone
from services.ingest.platforms.exceptions import PayloadError
from services.ingest.platforms.payload import Node, tool_arguments, tool_result_text
from services.ingest.platforms.transcript import TranscriptBuilder
from services.ingest.platforms.webhook import NormalisedWebhook, platform_event, require_aware

__all__ = ["PLATFORM", "POST_CALL_TYPES", "parse_initiation", "parse_post_call"]

PLATFORM = "elevenlabs"
POST_CALL_TYPES = frozenset(
    {"post_call_transcription", "post_call_audio", "call_initiation_failure"}
)
#: The webhook type of the conversation-initiation request in ids and kinds;
#: ElevenLabs gives that request no ``type`` of its own.
INITIATION_TYPE = "conversation_initiation"

_ROLES: dict[str, TurnRole] = {"agent": "agent", "user": "user"}
_CALL_SUCCESSFUL: dict[str, bool | None] = {"success": True, "failure": False, "unknown": None}
# Analysis fields with a place of their own in memstream's Analysis; any other
# analysis field is kept under metadata["analysis_other"].
_ANALYSIS_FIELDS = frozenset(
    {
        "transcript_summary",
        "call_summary_title",
        "call_successful",
        "data_collection_results",
        "evaluation_criteria_results",
    }
)
# Conversation fields ElevenLabs sends (docs/ingest.md) that are worth keeping with the metadata.
_CONVERSATION_FIELDS_KEPT = ("agent_name", "branch_id", "version_id", "environment", "has_audio")


def parse_post_call(
    tenant: str,
    body: dict[str, Any],
    *,
    received_at: datetime,
    default_region: str | None = None,
    legacy_ids_before: datetime | None = None,
) -> NormalisedWebhook:
    """Normalise one ElevenLabs post-call webhook body (already verified and parsed).

    Raises :class:`PayloadError` when the body is not of the documented shape:
    an unknown ``type`` (a misconfigured URL, not a new harmless message), no
    ``data.conversation_id``, or a field memstream reads having the wrong type.
    ``default_region`` places caller numbers written without a country code;
    ``legacy_ids_before`` is the tenant's (see :func:`.webhook.webhook_event_id`).
    """
    require_aware(received_at)
    root = _root(body)
    webhook_type = root["type"].choice(POST_CALL_TYPES)
    data = root["data"]
    if data.missing:
        raise data.error("is required")
    conversation_id = data["conversation_id"].identifier()
    kind = f"{PLATFORM}.{webhook_type}"

    if webhook_type == "post_call_audio":
        # data.full_audio is never read: it can be many megabytes and memstream keeps no audio.
        return NormalisedWebhook(
            events=[], kind=kind, conversation_id=conversation_id, subject=None
        )

    event_time = root["event_timestamp"].optional_unix_secs()
    agent_id = data["agent_id"].optional_identifier()
    build = _initiation_failure if webhook_type == "call_initiation_failure" else _transcription
    event = build(
        tenant,
        data,
        conversation_id,
        agent_id,
        event_time,
        received_at,
        default_region,
        legacy_ids_before,
    )
    return NormalisedWebhook(
        events=[event], kind=kind, conversation_id=conversation_id, subject=event.subject
    )


def parse_initiation(
    tenant: str,
    body: dict[str, Any],
    *,
    received_at: datetime | None = None,
    default_region: str | None = None,
    legacy_ids_before: datetime | None = None,
) -> NormalisedWebhook:
    """Normalise the conversation-initiation request of an inbound phone call.

    The body is ``{caller_id, agent_id, called_number, call_sid}``. ElevenLabs has
    not created its conversation yet, so the conversation id is the telephony
    ``call_sid`` (the later ``post_call_transcription`` carries the same value in
    ``metadata.phone_call.call_sid`` and ``system__call_sid``). The request has no
    timestamp: the call is ringing now, so ``occurred_at`` is ``received_at``
    (default: now). The caller's number is kept in the dynamic variables under the
    names ElevenLabs gives them in the conversation (``system__caller_id``...).
    """
    received_at = require_aware(received_at) if received_at is not None else utc_now()
    root = _root(body)
    call_sid = root["call_sid"].identifier()
    agent_id = root["agent_id"].optional_identifier()
    caller = root["caller_id"].optional_string()
    called = root["called_number"].optional_string()
    subject, caller_phone = caller_subject(
        tenant, user_id=None, phone=caller, conversation_id=call_sid, default_region=default_region
    )
    variables = {
        name: value
        for name, value in (
            ("system__caller_id", caller),
            ("system__called_number", called),
            ("system__call_sid", call_sid),
        )
        if value is not None
    }
    started = platform_event(
        ConversationStarted,
        platform=PLATFORM,
        webhook_type=INITIATION_TYPE,
        tenant=tenant,
        subject=subject,
        conversation_id=call_sid,
        agent_id=agent_id,
        occurred_at=received_at,
        received_at=received_at,
        legacy_ids_before=legacy_ids_before,
        data=ConversationStartedData(
            conversation_id=call_sid,
            caller_phone=caller_phone,
            agent_id=agent_id,
            dynamic_variables=variables,
            channel="phone",
        ),
    )
    return NormalisedWebhook(
        events=[started],
        kind=f"{PLATFORM}.{INITIATION_TYPE}",
        conversation_id=call_sid,
        subject=subject,
    )


# ------------------------------------------------------------------------ helpers


def _root(body: object) -> Node:
    if not isinstance(body, dict):
        raise PayloadError("", "the body must be a JSON object")
    return Node(body)


def _transcription(
    tenant: str,
    data: Node,
    conversation_id: str,
    agent_id: str | None,
    event_time: datetime | None,
    received_at: datetime,
    default_region: str | None,
    legacy_ids_before: datetime | None,
) -> ConversationEnded:
    metadata_node = data["metadata"]
    start_node = metadata_node["start_time_unix_secs"]
    started_at = start_node.optional_unix_secs()
    duration_node = metadata_node["call_duration_secs"]
    duration = duration_node.optional_duration_secs()
    if started_at is None:
        if event_time is None or duration is None:
            raise start_node.error(
                "is required (or event_timestamp and metadata.call_duration_secs)"
            )
        # The webhook is sent when the call is over, so this is the latest it started.
        started_at = duration_node.shifted(event_time, -duration)
    ended_at = duration_node.shifted(started_at, duration) if duration is not None else None

    client_data = data["conversation_initiation_client_data"]
    variables_node = client_data["dynamic_variables"]
    subject, _ = caller_subject(
        tenant,
        user_id=_user_id(data, variables_node),
        phone=_caller_number(metadata_node["phone_call"], variables_node, default_region),
        conversation_id=conversation_id,
        default_region=default_region,
    )

    metadata = metadata_node.object()
    for name in _CONVERSATION_FIELDS_KEPT:
        value = data[name].verbatim()
        if value is not None:
            metadata.setdefault(name, value)
    analysis_node = data["analysis"]
    analysis_other = analysis_node.object_except(_ANALYSIS_FIELDS)
    if analysis_other:
        metadata["analysis_other"] = analysis_other

    return platform_event(
        ConversationEnded,
        platform=PLATFORM,
        webhook_type="post_call_transcription",
        tenant=tenant,
        subject=subject,
        conversation_id=conversation_id,
        agent_id=agent_id,
        # The conversation ended at start + duration; event_timestamp is when the
        # webhook was produced, after the platform's analysis, so only a fallback.
        occurred_at=ended_at or event_time or started_at,
        received_at=received_at,
        legacy_ids_before=legacy_ids_before,
        data=ConversationEndedData(
            conversation_id=conversation_id,
            started_at=started_at,
            ended_at=ended_at,
            duration_secs=duration,
            status=data["status"].optional_string() or "unknown",
            turns=_turns(data["transcript"]),
            metadata=metadata,
            analysis=_analysis(analysis_node),
            dynamic_variables=variables_node.object(),
        ),
    )


def _turns(transcript: Node) -> tuple[Turn, ...]:
    builder = TranscriptBuilder()
    for entry in transcript.items():
        turn = builder.add_turn(
            _ROLES[entry["role"].choice(_ROLES)],
            # Null on turns that only call a tool; memstream's text is always a string.
            entry["message"].optional_string() or "",
            entry["time_in_call_secs"].offset_ms_from_secs(),
        )
        for call in entry["tool_calls"].items():
            builder.add_call(
                turn,
                call_id=call["request_id"].optional_identifier(),
                name=call["tool_name"].string(),
                arguments=tool_arguments(call["params_as_json"]),
            )
        for result in entry["tool_results"].items():
            value = tool_result_text(result.first("result_value", "result"))
            if not builder.add_result(
                turn, call_id=result["request_id"].optional_identifier(), result=value
            ):
                builder.add_unmatched_result(
                    turn, name=result["tool_name"].optional_string() or "", result=value
                )
    return builder.build()


def _analysis(node: Node) -> Analysis | None:
    if node.missing:
        return None
    return Analysis(
        summary=node["transcript_summary"].optional_string(),
        title=node["call_summary_title"].optional_string(),
        successful=_successful(node["call_successful"]),
        data_collected=node["data_collection_results"].object(),
        evaluation=node["evaluation_criteria_results"].object(),
    )


def _successful(node: Node) -> bool | None:
    if node.missing:
        return None
    if isinstance(node.raw, bool):
        return node.raw
    # A verdict added after "unknown" is not a yes or a no either.
    return _CALL_SUCCESSFUL.get(node.string())


def _user_id(data: Node, variables: Node) -> str | None:
    return data["user_id"].optional_identifier() or variables["user_id"].optional_identifier(
        integers=True
    )


def _caller_number(phone_call: Node, variables: Node, default_region: str | None) -> str | None:
    """The number of the person the agent talked to, the first valid one of the candidates.

    On an outbound call the "caller id" is the agent's own number, and the person
    is the one called.
    """
    if phone_call["direction"].optional_string() == "outbound":
        candidates = [phone_call["external_number"], variables["system__called_number"]]
    else:
        candidates = [variables["system__caller_id"], phone_call["external_number"]]
    raw = [number for node in candidates if (number := node.optional_string()) is not None]
    valid = next((n for n in raw if normalise_phone(n, default_region) is not None), None)
    return valid if valid is not None else next(iter(raw), None)


def _initiation_failure(
    tenant: str,
    data: Node,
    conversation_id: str,
    agent_id: str | None,
    event_time: datetime | None,
    received_at: datetime,
    default_region: str | None,
    legacy_ids_before: datetime | None,
) -> ConversationFailed:
    metadata_node = data["metadata"]
    variables = data["conversation_initiation_client_data"]["dynamic_variables"]
    subject, _ = caller_subject(
        tenant,
        user_id=_user_id(data, variables),
        phone=_called_number(metadata_node["body"], variables),
        conversation_id=conversation_id,
        default_region=default_region,
    )
    return platform_event(
        ConversationFailed,
        platform=PLATFORM,
        webhook_type="call_initiation_failure",
        tenant=tenant,
        subject=subject,
        conversation_id=conversation_id,
        agent_id=agent_id,
        occurred_at=event_time or received_at,
        received_at=received_at,
        legacy_ids_before=legacy_ids_before,
        data=ConversationFailedData(
            conversation_id=conversation_id,
            reason=data["failure_reason"].optional_string() or "unknown",
            failure_type=metadata_node["type"].optional_string(),
            metadata=metadata_node.object(),
        ),
    )


def _called_number(provider_body: Node, variables: Node) -> str | None:
    """Who the agent failed to reach: initiation failures are outbound calls (busy, no answer).

    ``metadata.body`` is the telephony provider's own payload, opaque to us, so it
    is read without shape checks: Twilio's ``To``, or a SIP provider's ``to_number``.
    """
    candidates: list[Any] = [variables["system__called_number"].raw]
    if isinstance(provider_body.raw, dict):
        candidates += [provider_body.raw.get(key) for key in ("To", "to_number", "to")]
    return next((c for c in candidates if isinstance(c, str) and c.strip()), None)
