"""Platform webhooks normalised into memstream events: content, idempotency, wrong shapes.

The payloads in ``ingest_payloads/`` follow the platforms' documented field lists
(docs/ingest.md), with the extra fields real platforms send around them.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas import (
    CallSignalled,
    CallSignalledData,
    ConversationEnded,
    ConversationFailed,
    ConversationStarted,
    Event,
    Source,
    ToolCall,
    Turn,
    TurnSaid,
    decode_event,
    derived_event_id,
    encode_event,
    tenant_event_id,
)
from services.ingest.platforms import NormalisedWebhook, PayloadError, elevenlabs, retell, vapi

PAYLOADS = Path(__file__).parent / "ingest_payloads"
TENANT = "acme"
RECEIVED = datetime(2025, 10, 14, 17, 30, 5, 123456, tzinfo=UTC)
LATER = RECEIVED + timedelta(minutes=30)

Parser = Callable[[dict[str, Any], datetime], NormalisedWebhook]


def load(name: str) -> dict[str, Any]:
    """A fresh copy of a payload fixture."""
    body: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return body


def eleven_post_call(body: dict[str, Any], received_at: datetime = RECEIVED) -> NormalisedWebhook:
    return elevenlabs.parse_post_call(TENANT, body, received_at=received_at)


def eleven_initiation(body: dict[str, Any], received_at: datetime = RECEIVED) -> NormalisedWebhook:
    return elevenlabs.parse_initiation(TENANT, body, received_at=received_at)


def vapi_message(body: dict[str, Any], received_at: datetime = RECEIVED) -> NormalisedWebhook:
    return vapi.parse_server_message(TENANT, body, received_at=received_at)


def retell_webhook(body: dict[str, Any], received_at: datetime = RECEIVED) -> NormalisedWebhook:
    return retell.parse_webhook(TENANT, body, received_at=received_at)


# Every fixture that produces events, with its parser and how many events it gives.
PRODUCING: list[tuple[str, Parser]] = [
    ("elevenlabs_post_call_transcription", eleven_post_call),
    ("elevenlabs_call_initiation_failure", eleven_post_call),
    ("elevenlabs_initiation", eleven_initiation),
    ("vapi_end_of_call_report", vapi_message),
    ("vapi_status_update", vapi_message),
    ("vapi_assistant_request", vapi_message),
    ("retell_call_analyzed", retell_webhook),
]
ALL: list[tuple[str, Parser]] = [*PRODUCING, ("elevenlabs_post_call_audio", eleven_post_call)]


def only_event(result: NormalisedWebhook) -> Event:
    assert len(result.events) == 1
    return result.events[0]


def ended(result: NormalisedWebhook) -> ConversationEnded:
    event = only_event(result)
    assert isinstance(event, ConversationEnded)
    return event


def started(result: NormalisedWebhook) -> ConversationStarted:
    # The call's start, and for a call that is live (Vapi in-progress, Retell
    # call_started) its call.signalled on the live topic after it.
    event, *live = result.events
    assert isinstance(event, ConversationStarted)
    assert all(isinstance(e, CallSignalled) and e.data.status == "in-progress" for e in live)
    return event


def payload_error(parse: Callable[[], object]) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse()
    return caught.value


def unix(secs: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)


# ------------------------------------------------------------------- ElevenLabs

ELEVEN_CONVERSATION = "conv_01jz8m2x4y6z8a0b2c4d6e8f0g"
ELEVEN_AGENT = "agent_01jz8k3m4n5p6q7r8s9t0v1w2x"


def test_elevenlabs_transcription_becomes_conversation_ended() -> None:
    result = eleven_post_call(load("elevenlabs_post_call_transcription"))
    event = ended(result)

    assert result.kind == "elevenlabs.post_call_transcription"
    assert result.conversation_id == ELEVEN_CONVERSATION
    assert result.subject == event.subject == "acme/+14155550123"
    assert event.id == tenant_event_id(
        TENANT, "elevenlabs", "post_call_transcription", ELEVEN_CONVERSATION
    )
    assert event.tenant == TENANT
    assert event.source == Source(
        platform="elevenlabs", event_id=ELEVEN_CONVERSATION, agent_id=ELEVEN_AGENT
    )
    assert event.correlation_id == ELEVEN_CONVERSATION
    assert event.causation_id is None
    assert event.recorded_at == RECEIVED
    # The call ended at start + duration, not when the webhook was sent or received.
    assert event.occurred_at == unix(1760434200 + 41)

    data = event.data
    assert data.conversation_id == ELEVEN_CONVERSATION
    assert data.started_at == unix(1760434200)
    assert data.ended_at == unix(1760434241)
    assert data.duration_secs == 41
    assert data.status == "done"


def test_elevenlabs_turns_keep_roles_texts_offsets_and_tool_calls() -> None:
    turns = ended(eleven_post_call(load("elevenlabs_post_call_transcription"))).data.turns

    assert "".join(turn.role[0] for turn in turns) == "auauaauaua"
    assert [turn.offset_ms for turn in turns] == [
        0,
        4200,
        9800,
        15000,
        16050,
        17300,
        23900,
        29500,
        36800,
        38400,
    ]
    assert turns[1].text == "Hi Ava, I need to move my cleaning appointment next week."
    # A null message (a turn that only calls a tool) is empty text.
    assert turns[4].text == ""
    assert turns[4].tool_calls == (
        ToolCall(
            name="lookup_appointment",
            arguments={"date_of_birth": "1988-03-03", "phone": "+14155550123"},
            result='{"appointment_id": "apt_7731", "starts_at": "2025-10-21T09:30:00-07:00"}',
        ),
    )
    assert turns[7].text.startswith("Done: you're booked")
    assert turns[7].tool_calls[0].name == "reschedule_appointment"
    assert turns[7].tool_calls[0].arguments == {
        "appointment_id": "apt_7731",
        "new_start": "2025-10-23T14:00:00-07:00",
    }
    assert turns[7].tool_calls[0].result == '{"status": "confirmed"}'
    assert all(turn.tool_calls == () for i, turn in enumerate(turns) if i not in (4, 7))


def test_elevenlabs_metadata_analysis_and_dynamic_variables() -> None:
    data = ended(eleven_post_call(load("elevenlabs_post_call_transcription"))).data

    assert data.metadata["cost"] == 412
    assert data.metadata["termination_reason"] == "end_call tool was called."
    assert data.metadata["call_duration_secs"] == 41
    assert data.metadata["phone_call"]["external_number"] == "+14155550123"
    assert data.metadata["phone_call"]["call_sid"] == "CA9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    # Fields ElevenLabs added to metadata and memstream knows nothing of are kept.
    assert data.metadata["timezone"] == "America/Los_Angeles"
    assert data.metadata["charging"]["call_charge"] == 409
    assert data.metadata["agent_name"] == "Ava - Bayview Dental reception"
    assert data.metadata["environment"] == "production"
    assert "analysis_other" not in data.metadata

    assert data.analysis is not None
    assert data.analysis.summary is not None
    assert data.analysis.summary.startswith("Maria moved her dental cleaning")
    assert data.analysis.title == "Cleaning moved to Thursday"
    assert data.analysis.successful is True
    assert data.analysis.data_collected["new_appointment_start"]["value"] == (
        "2025-10-23T14:00:00-07:00"
    )
    assert data.analysis.evaluation["appointment_handled"]["result"] == "success"

    assert data.dynamic_variables["system__caller_id"] == "+14155550123"
    assert data.dynamic_variables["user_name"] == "Maria"
    assert data.dynamic_variables["system__call_duration_secs"] == 41


@pytest.mark.parametrize(
    ("verdict", "successful"),
    [("success", True), ("failure", False), ("unknown", None), ("partial", None), (None, None)],
)
def test_elevenlabs_call_successful_maps_to_a_boolean_or_none(
    verdict: str | None, successful: bool | None
) -> None:
    body = load("elevenlabs_post_call_transcription")
    body["data"]["analysis"]["call_successful"] = verdict
    analysis = ended(eleven_post_call(body)).data.analysis
    assert analysis is not None
    assert analysis.successful is successful


def test_elevenlabs_unmapped_analysis_fields_are_kept_in_metadata() -> None:
    body = load("elevenlabs_post_call_transcription")
    body["data"]["analysis"]["sentiment"] = {"overall": "positive"}
    data = ended(eleven_post_call(body)).data
    assert data.metadata["analysis_other"] == {"sentiment": {"overall": "positive"}}


def test_elevenlabs_without_analysis_has_none() -> None:
    body = load("elevenlabs_post_call_transcription")
    del body["data"]["analysis"]
    assert ended(eleven_post_call(body)).data.analysis is None


def test_elevenlabs_user_id_names_the_subject() -> None:
    body = load("elevenlabs_post_call_transcription")
    body["data"]["user_id"] = "patient-4471"
    assert ended(eleven_post_call(body)).subject == "acme/patient-4471"


def test_elevenlabs_user_id_dynamic_variable_names_the_subject() -> None:
    body = load("elevenlabs_post_call_transcription")
    body["data"]["conversation_initiation_client_data"]["dynamic_variables"]["user_id"] = 4471
    assert ended(eleven_post_call(body)).subject == "acme/4471"


def test_elevenlabs_outbound_call_is_about_the_number_called() -> None:
    body = load("elevenlabs_post_call_transcription")
    phone_call = body["data"]["metadata"]["phone_call"]
    phone_call.update(direction="outbound", external_number="+14155550142")
    variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
    variables["system__caller_id"] = "+14155550100"  # the agent's own number
    assert ended(eleven_post_call(body)).subject == "acme/+14155550142"


def test_elevenlabs_caller_number_falls_back_to_the_external_number() -> None:
    body = load("elevenlabs_post_call_transcription")
    variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
    variables["system__caller_id"] = "anonymous"
    assert ended(eleven_post_call(body)).subject == "acme/+14155550123"


def test_elevenlabs_invalid_caller_number_gives_an_anonymous_subject() -> None:
    body = load("elevenlabs_post_call_transcription")
    del body["data"]["metadata"]["phone_call"]
    variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
    variables["system__caller_id"] = "+1 555-010-0000"
    assert ended(eleven_post_call(body)).subject == f"acme/anonymous-{ELEVEN_CONVERSATION}"


def test_elevenlabs_started_at_falls_back_to_event_timestamp_minus_duration() -> None:
    body = load("elevenlabs_post_call_transcription")
    del body["data"]["metadata"]["start_time_unix_secs"]
    data = ended(eleven_post_call(body)).data
    assert data.started_at == unix(1760434412 - 41)
    assert data.ended_at == unix(1760434412)


def test_elevenlabs_without_any_start_time_is_refused() -> None:
    body = load("elevenlabs_post_call_transcription")
    del body["data"]["metadata"]["start_time_unix_secs"]
    del body["event_timestamp"]
    error = payload_error(lambda: eleven_post_call(body))
    assert error.path == "data.metadata.start_time_unix_secs"


@pytest.mark.parametrize(
    ("params", "arguments"),
    [
        ('{"day": "Thursday"}', {"day": "Thursday"}),
        ({"day": "Thursday"}, {"day": "Thursday"}),
        ("{not json", {"_raw": "{not json"}),
        ('["Thursday"]', {"_raw": '["Thursday"]'}),
        ("", {}),
        (None, {}),
    ],
)
def test_elevenlabs_tool_arguments_are_parsed_leniently(params: Any, arguments: Any) -> None:
    body = load("elevenlabs_post_call_transcription")
    body["data"]["transcript"][4]["tool_calls"][0]["params_as_json"] = params
    turn = ended(eleven_post_call(body)).data.turns[4]
    assert turn.tool_calls[0].arguments == arguments


def test_elevenlabs_tool_result_in_a_later_turn_joins_its_call_by_request_id() -> None:
    body = load("elevenlabs_post_call_transcription")
    transcript = body["data"]["transcript"]
    transcript[5]["tool_results"] = transcript[4]["tool_results"]
    transcript[4]["tool_results"] = []
    turns = ended(eleven_post_call(body)).data.turns
    assert turns[4].tool_calls[0].result is not None
    assert turns[4].tool_calls[0].result.startswith('{"appointment_id"')
    assert turns[5].tool_calls == ()


def test_elevenlabs_tool_results_without_request_ids_join_calls_by_position() -> None:
    body = load("elevenlabs_post_call_transcription")
    turn = body["data"]["transcript"][4]
    second_call = {**turn["tool_calls"][0], "tool_name": "send_sms", "params_as_json": "{}"}
    turn["tool_calls"].append(second_call)
    turn["tool_results"].append({**turn["tool_results"][0], "result_value": "sent"})
    for entry in (*turn["tool_calls"], *turn["tool_results"]):
        del entry["request_id"]
    calls = ended(eleven_post_call(body)).data.turns[4].tool_calls
    assert [(call.name, call.result) for call in calls] == [
        ("lookup_appointment", turn["tool_results"][0]["result_value"]),
        ("send_sms", "sent"),
    ]


def test_elevenlabs_tool_result_without_its_call_is_kept() -> None:
    body = load("elevenlabs_post_call_transcription")
    body["data"]["transcript"][4]["tool_calls"] = []
    calls = ended(eleven_post_call(body)).data.turns[4].tool_calls
    assert len(calls) == 1
    assert calls[0].name == "lookup_appointment"
    assert calls[0].arguments == {}
    assert calls[0].result is not None


def test_elevenlabs_non_string_tool_result_is_kept_as_json_text() -> None:
    body = load("elevenlabs_post_call_transcription")
    body["data"]["transcript"][4]["tool_results"][0]["result_value"] = {"b": 1, "a": [True]}
    call = ended(eleven_post_call(body)).data.turns[4].tool_calls[0]
    assert call.result == '{"a":[true],"b":1}'


def test_elevenlabs_negative_offset_is_clamped_to_zero() -> None:
    body = load("elevenlabs_post_call_transcription")
    body["data"]["transcript"][0]["time_in_call_secs"] = -0.2
    assert ended(eleven_post_call(body)).data.turns[0].offset_ms == 0


def test_elevenlabs_call_initiation_failure_becomes_conversation_failed() -> None:
    result = eleven_post_call(load("elevenlabs_call_initiation_failure"))
    event = only_event(result)
    assert isinstance(event, ConversationFailed)
    conversation_id = "conv_01jz9q4r6s8t0v2w4x6y8z0a2b"
    assert result.kind == "elevenlabs.call_initiation_failure"
    assert result.conversation_id == conversation_id
    assert event.id == tenant_event_id(
        TENANT, "elevenlabs", "call_initiation_failure", conversation_id
    )
    # Initiation failures are outbound calls: about the person who was called.
    assert event.subject == result.subject == "acme/+14155550142"
    assert event.occurred_at == unix(1760437805)
    assert event.source == Source(
        platform="elevenlabs", event_id=conversation_id, agent_id=ELEVEN_AGENT
    )
    assert event.data.reason == "busy"
    assert event.data.failure_type == "twilio"
    assert event.data.metadata["body"]["CallStatus"] == "busy"


def test_elevenlabs_call_initiation_failure_without_a_number_is_anonymous() -> None:
    body = load("elevenlabs_call_initiation_failure")
    body["data"]["metadata"] = {"type": "sip", "body": {"sip_status": 486}}
    body["data"]["failure_reason"] = None
    event = only_event(eleven_post_call(body))
    assert isinstance(event, ConversationFailed)
    assert event.subject == "acme/anonymous-conv_01jz9q4r6s8t0v2w4x6y8z0a2b"
    assert event.data.reason == "unknown"
    assert event.data.failure_type == "sip"


def test_elevenlabs_post_call_audio_is_acknowledged_without_events() -> None:
    result = eleven_post_call(load("elevenlabs_post_call_audio"))
    assert result == NormalisedWebhook(
        events=[],
        kind="elevenlabs.post_call_audio",
        conversation_id=ELEVEN_CONVERSATION,
        subject=None,
    )


def test_elevenlabs_post_call_audio_still_needs_a_conversation_id() -> None:
    body = load("elevenlabs_post_call_audio")
    del body["data"]["conversation_id"]
    assert payload_error(lambda: eleven_post_call(body)).path == "data.conversation_id"


def test_elevenlabs_initiation_becomes_conversation_started() -> None:
    result = eleven_initiation(load("elevenlabs_initiation"))
    event = started(result)
    call_sid = "CA9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    assert result.kind == "elevenlabs.conversation_initiation"
    assert result.conversation_id == event.correlation_id == call_sid
    assert event.id == tenant_event_id(TENANT, "elevenlabs", "conversation_initiation", call_sid)
    assert event.subject == result.subject == "acme/+14155550123"
    assert event.occurred_at == event.recorded_at == RECEIVED
    assert event.source == Source(platform="elevenlabs", event_id=call_sid, agent_id=ELEVEN_AGENT)
    assert event.data.conversation_id == call_sid
    assert event.data.caller_phone == "+14155550123"
    assert event.data.user_id is None
    assert event.data.agent_id == ELEVEN_AGENT
    assert event.data.channel == "phone"
    assert event.data.dynamic_variables == {
        "system__caller_id": "+14155550123",
        "system__called_number": "+14155550100",
        "system__call_sid": call_sid,
    }


def test_elevenlabs_initiation_from_a_withheld_number_is_anonymous() -> None:
    body = load("elevenlabs_initiation")
    body["caller_id"] = "anonymous"
    event = started(eleven_initiation(body))
    assert event.subject == "acme/anonymous-CA9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    assert event.data.caller_phone is None


def test_elevenlabs_initiation_defaults_received_at_to_now() -> None:
    before = datetime.now(UTC)
    event = started(elevenlabs.parse_initiation(TENANT, load("elevenlabs_initiation")))
    assert before <= event.occurred_at <= datetime.now(UTC)


def transcript_turn(body: dict[str, Any], index: int) -> dict[str, Any]:
    turn: dict[str, Any] = body["data"]["transcript"][index]
    return turn


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b.update(type="post_call_summary"), "type"),
        (lambda b: b.pop("type"), "type"),
        (lambda b: b.pop("data"), "data"),
        (lambda b: b.update(data=["not", "an", "object"]), "data"),
        (lambda b: b["data"].pop("conversation_id"), "data.conversation_id"),
        (lambda b: b["data"].update(conversation_id="  "), "data.conversation_id"),
        (lambda b: b["data"].update(conversation_id=42), "data.conversation_id"),
        (lambda b: b["data"].update(conversation_id="conv\x1f1"), "data.conversation_id"),
        (lambda b: b["data"].update(transcript={"role": "agent"}), "data.transcript"),
        (lambda b: b["data"].update(transcript="AI: hi"), "data.transcript"),
        (
            lambda b: transcript_turn(b, 3).update(time_in_call_secs="15"),
            "data.transcript[3].time_in_call_secs",
        ),
        (
            lambda b: transcript_turn(b, 3).pop("time_in_call_secs"),
            "data.transcript[3].time_in_call_secs",
        ),
        (
            lambda b: transcript_turn(b, 2).update(role="assistant"),
            "data.transcript[2].role",
        ),
        (lambda b: transcript_turn(b, 1).update(message=7), "data.transcript[1].message"),
        (
            lambda b: transcript_turn(b, 4)["tool_calls"][0].pop("tool_name"),
            "data.transcript[4].tool_calls[0].tool_name",
        ),
        (
            lambda b: transcript_turn(b, 4)["tool_calls"][0].update(params_as_json=3),
            "data.transcript[4].tool_calls[0].params_as_json",
        ),
        (lambda b: b["data"].update(metadata="none"), "data.metadata"),
        (
            lambda b: b["data"]["metadata"].update(start_time_unix_secs="1760434200"),
            "data.metadata.start_time_unix_secs",
        ),
        (
            lambda b: b["data"]["metadata"].update(call_duration_secs=-1),
            "data.metadata.call_duration_secs",
        ),
        (
            lambda b: b["data"]["analysis"].update(call_successful=1),
            "data.analysis.call_successful",
        ),
        (
            lambda b: b["data"]["analysis"].update(data_collection_results=[]),
            "data.analysis.data_collection_results",
        ),
        (
            lambda b: b["data"]["conversation_initiation_client_data"].update(dynamic_variables=[]),
            "data.conversation_initiation_client_data.dynamic_variables",
        ),
        (lambda b: b["data"].update(user_id="usr\n1"), "data.user_id"),
    ],
)
def test_elevenlabs_wrong_shapes_name_the_field(
    change: Callable[[dict[str, Any]], object], path: str
) -> None:
    body = load("elevenlabs_post_call_transcription")
    change(body)
    assert payload_error(lambda: eleven_post_call(body)).path == path


def test_elevenlabs_body_that_is_not_an_object_is_refused() -> None:
    error = payload_error(lambda: elevenlabs.parse_post_call(TENANT, [], received_at=RECEIVED))  # type: ignore[arg-type]
    assert error.path == ""
    assert str(error) == "<body>: the body must be a JSON object"


def test_elevenlabs_initiation_needs_a_call_sid() -> None:
    body = load("elevenlabs_initiation")
    del body["call_sid"]
    assert payload_error(lambda: eleven_initiation(body)).path == "call_sid"


# ------------------------------------------------------------------------- Vapi

VAPI_CALL = "b6f0c6a2-4e1d-4c8f-9a3b-2d7e5f1a9c04"
VAPI_ASSISTANT = "7a3c9e1f-2b4d-4f6a-8c0e-1d3f5a7b9c2e"
VAPI_STARTED = datetime(2025, 10, 14, 17, 10, 0, 512000, tzinfo=UTC)
VAPI_STARTED_MS = 1760461800512


def test_vapi_end_of_call_report_becomes_conversation_ended() -> None:
    result = vapi_message(load("vapi_end_of_call_report"))
    event = ended(result)
    assert result.kind == "vapi.end-of-call-report"
    assert result.conversation_id == event.correlation_id == VAPI_CALL
    assert event.id == tenant_event_id(TENANT, "vapi", "end-of-call-report", VAPI_CALL)
    assert event.subject == result.subject == "acme/+14155550123"
    assert event.source == Source(platform="vapi", event_id=VAPI_CALL, agent_id=VAPI_ASSISTANT)
    assert event.occurred_at == datetime(2025, 10, 14, 17, 10, 19, 20000, tzinfo=UTC)
    assert event.recorded_at == RECEIVED

    data = event.data
    assert data.started_at == VAPI_STARTED
    assert data.ended_at == datetime(2025, 10, 14, 17, 10, 19, 20000, tzinfo=UTC)
    assert data.duration_secs == 18.508
    assert data.status == "customer-ended-call"


def test_vapi_turns_map_roles_and_join_tool_results_to_their_calls() -> None:
    turns = ended(vapi_message(load("vapi_end_of_call_report"))).data.turns
    assert [(turn.role, turn.offset_ms) for turn in turns] == [
        ("system", 0),
        ("agent", 490),
        ("user", 5100),
        ("tool", 9700),
        ("agent", 11200),
        ("user", 15600),
        ("agent", 17050),
    ]
    assert turns[0].text.startswith("You are Ava")
    assert turns[2].text == "Hi, can I book a cleaning for Thursday afternoon?"
    assert turns[3].text == ""
    assert turns[3].tool_calls == (
        ToolCall(
            name="book_appointment",
            arguments={"day": "Thursday", "part_of_day": "afternoon", "kind": "cleaning"},
            result="Booked Thursday 23 October at 14:00",
        ),
    )


def test_vapi_analysis_metadata_and_variables() -> None:
    body = load("vapi_end_of_call_report")
    body["message"]["call"]["assistantOverrides"] = {
        "variableValues": {"user_name": "Maria", "visits": 3}
    }
    data = ended(vapi_message(body)).data
    assert data.analysis is not None
    assert data.analysis.summary == (
        "The caller booked a dental cleaning for Thursday 23 October at 14:00."
    )
    assert data.analysis.successful is True
    assert data.analysis.data_collected == {"appointment_booked": True, "preferred_day": "Thursday"}
    assert data.analysis.evaluation == {"successEvaluation": "true"}

    assert data.metadata["endedReason"] == "customer-ended-call"
    assert data.metadata["cost"] == 0.1342
    assert data.metadata["costBreakdown"]["total"] == 0.1342
    assert data.metadata["durationMinutes"] == 0.3085
    assert data.metadata["recordingUrl"].endswith("-mono.wav")
    assert data.metadata["artifact"]["stereoRecordingUrl"].endswith("-stereo.wav")
    assert "messages" not in data.metadata["artifact"]
    assert data.metadata["call"] == {
        "id": VAPI_CALL,
        "orgId": "0d1f6a2e-3b4c-4d5e-8f9a-0b1c2d3e4f5a",
        "type": "inboundPhoneCall",
        "status": "ended",
        "phoneNumberId": "5e8b2d4f-6a1c-4e3b-9d7f-0a2c4e6b8d1f",
        "assistantId": VAPI_ASSISTANT,
    }
    # Only the number itself: the rest of the phone number object is provider configuration.
    assert data.metadata["phoneNumber"] == {
        "id": "5e8b2d4f-6a1c-4e3b-9d7f-0a2c4e6b8d1f",
        "number": "+14155550100",
        "provider": "twilio",
    }
    assert data.metadata["customer"] == {"number": "+14155550123"}
    for mapped in ("messages", "transcript", "summary", "assistant", "analysis", "type"):
        assert mapped not in data.metadata
    assert data.dynamic_variables == {"user_name": "Maria", "visits": 3}


@pytest.mark.parametrize(
    ("verdict", "successful"),
    [
        ("true", True),
        (True, True),
        ("Pass", True),
        ("false", False),
        (False, False),
        ("8", None),
        (8, None),
        ("Excellent", None),
        (None, None),
    ],
)
def test_vapi_success_evaluation_is_a_boolean_only_for_pass_fail(
    verdict: Any, successful: bool | None
) -> None:
    body = load("vapi_end_of_call_report")
    body["message"]["analysis"]["successEvaluation"] = verdict
    analysis = ended(vapi_message(body)).data.analysis
    assert analysis is not None
    assert analysis.successful is successful
    assert analysis.evaluation == ({} if verdict is None else {"successEvaluation": verdict})


def test_vapi_user_id_variable_names_the_subject() -> None:
    body = load("vapi_end_of_call_report")
    body["message"]["call"]["assistantOverrides"] = {"variableValues": {"user_id": "patient-4471"}}
    assert ended(vapi_message(body)).subject == "acme/patient-4471"


def test_vapi_customer_number_is_read_from_the_message_when_the_call_has_none() -> None:
    body = load("vapi_end_of_call_report")
    del body["message"]["call"]["customer"]
    body["message"]["customer"] = {"number": "+1 415 555 0199"}
    assert ended(vapi_message(body)).subject == "acme/+14155550199"


def test_vapi_web_call_without_a_number_is_anonymous() -> None:
    body = load("vapi_end_of_call_report")
    del body["message"]["call"]["customer"]
    del body["message"]["customer"]
    body["message"]["call"]["type"] = "webCall"
    assert ended(vapi_message(body)).subject == f"acme/anonymous-{VAPI_CALL}"


def test_vapi_transcript_falls_back_to_top_level_messages() -> None:
    body = load("vapi_end_of_call_report")
    expected = ended(vapi_message(copy.deepcopy(body))).data.turns
    del body["message"]["artifact"]["messages"]
    assert ended(vapi_message(body)).data.turns == expected


def test_vapi_transcript_falls_back_to_the_transcript_text() -> None:
    body = load("vapi_end_of_call_report")
    del body["message"]["artifact"]
    del body["message"]["messages"]
    body["message"]["transcript"] = (
        "AI: Hello.\nUser: Hi, it's Maria.\nI moved house.\nAI: Noted.\n"
    )
    turns = ended(vapi_message(body)).data.turns
    assert [(turn.role, turn.text, turn.offset_ms) for turn in turns] == [
        ("agent", "Hello.", 0),
        ("user", "Hi, it's Maria.\nI moved house.", 0),
        ("agent", "Noted.", 0),
    ]


def test_vapi_without_any_transcript_has_no_turns() -> None:
    body = load("vapi_end_of_call_report")
    for name in ("artifact", "messages", "transcript"):
        del body["message"][name]
    assert ended(vapi_message(body)).data.turns == ()


@pytest.mark.parametrize(
    ("time", "offset_ms"),
    [
        (VAPI_STARTED_MS + 5100, 5100),  # an absolute unix time in milliseconds
        (5100, 5100),  # milliseconds since the call started
        (VAPI_STARTED_MS - 300, 0),  # stamped before the call's start
    ],
)
def test_vapi_time_is_read_when_seconds_from_start_is_missing(time: int, offset_ms: int) -> None:
    body = load("vapi_end_of_call_report")
    message = body["message"]["artifact"]["messages"][2]
    del message["secondsFromStart"]
    message["time"] = time
    assert ended(vapi_message(body)).data.turns[2].offset_ms == offset_ms


def test_vapi_tool_result_without_its_call_becomes_a_tool_turn() -> None:
    body = load("vapi_end_of_call_report")
    del body["message"]["artifact"]["messages"][3]
    turns = ended(vapi_message(body)).data.turns
    assert (turns[3].role, turns[3].offset_ms, turns[3].text) == ("tool", 10450, "")
    assert turns[3].tool_calls == (
        ToolCall(name="book_appointment", result="Booked Thursday 23 October at 14:00"),
    )


def test_vapi_tool_call_arguments_may_be_an_object_in_the_flat_shape() -> None:
    body = load("vapi_end_of_call_report")
    message = body["message"]["artifact"]["messages"][3]
    message["toolCalls"] = [{"id": "call_Qx1mB7", "name": "book_appointment", "arguments": {}}]
    call = ended(vapi_message(body)).data.turns[3].tool_calls[0]
    assert (call.name, call.arguments) == ("book_appointment", {})
    assert call.result == "Booked Thursday 23 October at 14:00"


def test_vapi_started_at_falls_back_to_ended_at_minus_duration() -> None:
    body = load("vapi_end_of_call_report")
    del body["message"]["startedAt"]
    del body["message"]["call"]["startedAt"]
    data = ended(vapi_message(body)).data
    assert data.started_at == VAPI_STARTED


def test_vapi_status_update_in_progress_becomes_conversation_started() -> None:
    result = vapi_message(load("vapi_status_update"))
    event = started(result)
    assert result.kind == "vapi.status-update"
    assert event.id == tenant_event_id(TENANT, "vapi", "status-update", VAPI_CALL)
    assert event.subject == result.subject == "acme/+14155550123"
    assert event.occurred_at == VAPI_STARTED + timedelta(milliseconds=18)
    assert event.recorded_at == RECEIVED
    assert event.source == Source(platform="vapi", event_id=VAPI_CALL, agent_id=VAPI_ASSISTANT)
    assert event.data.conversation_id == VAPI_CALL
    assert event.data.caller_phone == "+14155550123"
    assert event.data.agent_id == VAPI_ASSISTANT
    assert event.data.channel == "phone"
    assert event.data.dynamic_variables == {}


@pytest.mark.parametrize("status", ["in-progress", "ringing", "forwarding", "ended"])
def test_vapi_status_updates_are_live_signals(status: str) -> None:
    body = load("vapi_status_update")
    body["message"]["status"] = status
    result = vapi_message(body)
    # "ended" included: the end-of-call-report carries the transcript, and the live
    # processor learns the call is over.
    signal = result.events[-1]
    assert isinstance(signal, CallSignalled)
    assert signal.topic == "live"
    assert len(result.events) == (2 if status == "in-progress" else 1)
    assert signal.subject == result.subject == "acme/+14155550123"
    assert signal.data == CallSignalledData(
        conversation_id=VAPI_CALL, signal="status", status=status, started_at=None
    )
    assert signal.occurred_at == VAPI_STARTED + timedelta(milliseconds=18)
    assert vapi_message(body).events == result.events  # a redelivery is the same event


def vapi_live(message: dict[str, Any], **call: Any) -> dict[str, Any]:
    """A mid-call Vapi message of the status-update fixture's call."""
    body = load("vapi_status_update")
    base = {k: body["message"][k] for k in ("timestamp", "call", "customer", "assistant")}
    base["call"] = {**base["call"], **call}
    return {"message": {**base, **message}}


def test_vapi_final_transcripts_are_turns_said() -> None:
    started_at = "2025-10-14T17:10:00.512Z"
    body = vapi_live(
        {
            "type": "transcript",
            "role": "user",
            "transcriptType": "final",
            "transcript": " I'd like to move my cleaning to Friday. ",
            "timestamp": VAPI_STARTED_MS + 74_250,
        },
        startedAt=started_at,
    )
    result = vapi_message(body)
    [said] = result.events
    assert isinstance(said, TurnSaid)
    assert said.topic == "live" and said.subject == "acme/+14155550123"
    assert said.data.conversation_id == VAPI_CALL == said.correlation_id
    assert said.data.started_at == VAPI_STARTED
    assert said.began == VAPI_STARTED
    assert said.data.turns == (
        Turn(role="user", text="I'd like to move my cleaning to Friday.", offset_ms=74_250),
    )
    assert said.occurred_at == VAPI_STARTED + timedelta(milliseconds=74_250)
    assert vapi_message(body).events[0].id == said.id  # redelivered: the same event
    # The agent's turn at the same moment, or another text, is another event.
    agent = vapi_live({**body["message"], "role": "assistant"}, startedAt=started_at)
    assert vapi_message(agent).events[0].id != said.id
    assert vapi_message(agent).events[0].data.turns[0].role == "agent"
    other = vapi_live({**body["message"], "transcript": "Friday works"}, startedAt=started_at)
    assert vapi_message(other).events[0].id != said.id


@pytest.mark.parametrize(
    ("message", "signal", "role"),
    [
        (
            {"type": "speech-update", "status": "started", "role": "assistant"},
            "speech-started",
            "agent",
        ),
        ({"type": "speech-update", "status": "stopped", "role": "user"}, "speech-stopped", "user"),
        ({"type": "user-interrupted"}, "user-interrupted", None),
        ({"type": "hang"}, "hang", None),
        ({"type": "conversation-update", "messages": []}, "conversation-update", None),
    ],
)
def test_vapi_mid_call_messages_are_live_signals(
    message: dict[str, Any], signal: str, role: str | None
) -> None:
    [event] = vapi_message(vapi_live(message)).events
    assert isinstance(event, CallSignalled)
    assert event.data.signal == signal and event.data.role == role
    assert event.data.conversation_id == VAPI_CALL


@pytest.mark.parametrize(
    "message",
    [
        {"type": "transcript", "role": "user", "transcriptType": "partial", "transcript": "I'd"},
        {"type": "transcript", "role": "user", "transcriptType": "final", "transcript": "  "},
        {"type": "transcript", "role": "system", "transcriptType": "final", "transcript": "x"},
        {"type": "speech-update", "status": "paused", "role": "user"},
    ],
)
def test_vapi_partial_and_empty_mid_call_messages_give_no_events(message: dict[str, Any]) -> None:
    assert vapi_message(vapi_live(message)).events == []


def test_vapi_assistant_request_becomes_conversation_started() -> None:
    body = load("vapi_assistant_request")
    body["message"]["call"]["assistantOverrides"] = {
        "variableValues": {"user_name": "Maria", "tags": ["vip"]}
    }
    result = vapi_message(body)
    event = started(result)
    assert result.kind == "vapi.assistant-request"
    assert event.id == tenant_event_id(TENANT, "vapi", "assistant-request", VAPI_CALL)
    assert event.subject == "acme/+14155550123"
    assert event.occurred_at == VAPI_STARTED - timedelta(milliseconds=2411)
    # No assistant is chosen yet: that is what the request asks for.
    assert event.source.agent_id is None
    assert event.data.channel == "phone"
    # conversation.started holds scalar variables; a list is kept as JSON text.
    assert event.data.dynamic_variables == {"user_name": "Maria", "tags": '["vip"]'}


def test_vapi_web_call_started_has_the_web_channel() -> None:
    body = load("vapi_status_update")
    body["message"]["call"]["type"] = "webCall"
    del body["message"]["call"]["customer"]
    del body["message"]["customer"]
    event = started(vapi_message(body))
    assert event.data.channel == "web"
    assert event.data.caller_phone is None


@pytest.mark.parametrize(
    "message",
    [
        {"type": "transcript", "role": "user", "transcriptType": "final", "transcript": "Hi"},
        {"type": "speech-update", "status": "started", "role": "assistant"},
        {"type": "conversation-update", "messages": [], "call": "not an object"},
        {"type": "hang", "call": {"id": ["not", "an", "id"]}},
        {"type": "transcript", "transcriptType": "final", "transcript": 3, "call": {"id": "c"}},
        {"type": "tool-calls", "toolCallList": [], "call": {"id": VAPI_CALL}},
        {"type": "a-type-added-next-year", "call": {"id": VAPI_CALL}},
    ],
)
def test_vapi_informational_messages_give_no_events(message: dict[str, Any]) -> None:
    result = vapi_message({"message": message})
    assert result.events == []
    assert result.kind == f"vapi.{message['type']}"
    call = message.get("call")
    call_id = call["id"] if isinstance(call, dict) else None
    assert result.conversation_id == (call_id if isinstance(call_id, str) else None)


def vapi_entry(body: dict[str, Any], index: int) -> dict[str, Any]:
    entry: dict[str, Any] = body["message"]["artifact"]["messages"][index]
    return entry


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b.pop("message"), "message"),
        (lambda b: b.update(message="end-of-call-report"), "message"),
        (lambda b: b["message"].pop("type"), "message.type"),
        (lambda b: b["message"]["call"].pop("id"), "message.call.id"),
        (lambda b: b["message"].pop("call"), "message.call.id"),
        (lambda b: b["message"]["artifact"].update(messages={}), "message.artifact.messages"),
        (lambda b: vapi_entry(b, 2).update(role="caller"), "message.artifact.messages[2].role"),
        (
            lambda b: vapi_entry(b, 2).update(secondsFromStart="5.1"),
            "message.artifact.messages[2].secondsFromStart",
        ),
        (
            lambda b: [vapi_entry(b, 2).pop(key) for key in ("secondsFromStart", "time")],
            "message.artifact.messages[2].secondsFromStart",
        ),
        (
            lambda b: vapi_entry(b, 3)["toolCalls"][0]["function"].pop("name"),
            "message.artifact.messages[3].toolCalls[0].function.name",
        ),
        (lambda b: b["message"].update(startedAt="yesterday"), "message.startedAt"),
        (
            lambda b: (
                [b["message"].pop(k) for k in ("startedAt", "durationSeconds", "durationMs")]
                + [b["message"]["call"].pop("startedAt")]
            ),
            "message.startedAt",
        ),
        (lambda b: b["message"].update(durationSeconds=-3), "message.durationSeconds"),
        (lambda b: b["message"].update(analysis=[]), "message.analysis"),
    ],
)
def test_vapi_wrong_shapes_name_the_field(
    change: Callable[[dict[str, Any]], object], path: str
) -> None:
    body = load("vapi_end_of_call_report")
    change(body)
    assert payload_error(lambda: vapi_message(body)).path == path


def test_vapi_started_needs_a_call_id() -> None:
    body = load("vapi_assistant_request")
    del body["message"]["call"]["id"]
    assert payload_error(lambda: vapi_message(body)).path == "message.call.id"


# ----------------------------------------------------------------------- Retell

RETELL_CALL = "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6"
RETELL_START_MS = 1760462400250


def test_retell_call_analyzed_becomes_conversation_ended() -> None:
    result = retell_webhook(load("retell_call_analyzed"))
    event = ended(result)
    assert result.kind == "retell.call_analyzed"
    assert result.conversation_id == event.correlation_id == RETELL_CALL
    assert event.id == tenant_event_id(TENANT, "retell", "call_analyzed", RETELL_CALL)
    assert event.subject == result.subject == "acme/+14155550123"
    assert event.source == Source(
        platform="retell", event_id=RETELL_CALL, agent_id="oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD"
    )
    started_at = unix(RETELL_START_MS / 1000)
    assert event.occurred_at == started_at + timedelta(milliseconds=19830)

    data = event.data
    assert data.started_at == started_at
    assert data.ended_at == started_at + timedelta(milliseconds=19830)
    assert data.duration_secs == 19.83
    assert data.status == "ended"
    assert [(turn.role, turn.offset_ms) for turn in data.turns] == [
        ("agent", 620),
        ("user", 4870),
        ("agent", 9310),
        ("user", 15020),
        ("agent", 17440),
    ]
    assert data.turns[1].text == "Hi Sam, I'd like to cancel my appointment on Friday."

    assert data.analysis is not None
    assert data.analysis.summary == (
        "The caller cancelled her Friday appointment and did not rebook."
    )
    assert data.analysis.successful is True
    assert data.analysis.data_collected == {"cancelled_day": "Friday", "wants_rebooking": False}
    assert data.metadata["analysis_other"] == {"in_voicemail": False, "user_sentiment": "Neutral"}
    assert data.metadata["disconnection_reason"] == "user_hangup"
    assert data.metadata["call_cost"]["combined_cost"] == 23.1
    assert data.metadata["metadata"] == {"crm_contact_id": "ct_88412"}
    assert data.metadata["to_number"] == "+14155550100"
    for mapped in ("transcript", "transcript_object", "transcript_with_tool_calls", "call_id"):
        assert mapped not in data.metadata
    assert data.dynamic_variables == {"customer_name": "Maria"}


def test_retell_call_ended_is_a_separate_event_without_analysis() -> None:
    body = load("retell_call_analyzed")
    body["event"] = "call_ended"
    del body["call"]["call_analysis"]
    event = ended(retell_webhook(body))
    analyzed = ended(retell_webhook(load("retell_call_analyzed")))
    assert event.id == tenant_event_id(TENANT, "retell", "call_ended", RETELL_CALL)
    assert event.id != analyzed.id
    assert event.correlation_id == analyzed.correlation_id
    assert event.data.analysis is None
    assert event.data.turns == analyzed.data.turns


def test_retell_outbound_call_is_about_the_number_called() -> None:
    body = load("retell_call_analyzed")
    body["call"].update(direction="outbound", from_number="+14155550100", to_number="+14155550142")
    assert ended(retell_webhook(body)).subject == "acme/+14155550142"


def test_retell_user_id_variable_names_the_subject() -> None:
    body = load("retell_call_analyzed")
    body["call"]["retell_llm_dynamic_variables"]["user_id"] = "patient-4471"
    assert ended(retell_webhook(body)).subject == "acme/patient-4471"


def test_retell_turn_without_words_keeps_the_previous_offset() -> None:
    body = load("retell_call_analyzed")
    body["call"]["transcript_object"][2]["words"] = []
    turns = ended(retell_webhook(body)).data.turns
    assert [turn.offset_ms for turn in turns] == [620, 4870, 4870, 15020, 17440]


def test_retell_call_started_starts_a_live_call() -> None:
    body = load("retell_call_analyzed")
    body["event"] = "call_started"
    result = retell_webhook(body)
    event = started(result)
    assert len(result.events) == 2  # and the live topic's signal: the call is in progress
    assert event.id == tenant_event_id(TENANT, "retell", "call_started", RETELL_CALL)
    assert event.subject == result.subject == result.events[1].subject
    assert event.occurred_at == unix(RETELL_START_MS / 1000)
    assert event.data.caller_phone is not None
    assert event.subject.endswith(event.data.caller_phone)
    assert result.events[1].topic == "live"
    assert retell_webhook(body).events == result.events  # redelivered: the same events


@pytest.mark.parametrize("event", ["transcript_updated", "an_event_added_later"])
def test_retell_other_events_give_no_events(event: str) -> None:
    body = load("retell_call_analyzed")
    body["event"] = event
    assert retell_webhook(body) == NormalisedWebhook(
        events=[], kind=f"retell.{event}", conversation_id=RETELL_CALL, subject=None
    )


def retell_turn(body: dict[str, Any], index: int) -> dict[str, Any]:
    turn: dict[str, Any] = body["call"]["transcript_object"][index]
    return turn


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b.pop("event"), "event"),
        (lambda b: b.pop("call"), "call"),
        (lambda b: b["call"].pop("call_id"), "call.call_id"),
        (lambda b: b["call"].update(transcript_object="Agent: hi"), "call.transcript_object"),
        (lambda b: retell_turn(b, 1).update(role="caller"), "call.transcript_object[1].role"),
        (
            lambda b: retell_turn(b, 1)["words"][0].update(start="4.87"),
            "call.transcript_object[1].words[0].start",
        ),
        (
            lambda b: [b["call"].pop(k) for k in ("start_timestamp", "duration_ms")],
            "call.start_timestamp",
        ),
        (
            lambda b: b["call"].update(end_timestamp=RETELL_START_MS - 1),
            "call.end_timestamp",
        ),
        (
            lambda b: b["call"]["call_analysis"].update(call_successful="yes"),
            "call.call_analysis.call_successful",
        ),
    ],
)
def test_retell_wrong_shapes_name_the_field(
    change: Callable[[dict[str, Any]], object], path: str
) -> None:
    body = load("retell_call_analyzed")
    change(body)
    assert payload_error(lambda: retell_webhook(body)).path == path


# ------------------------------------------------------------ every platform


def add_unknown_fields(value: Any) -> Any:
    """``value`` with a field no platform sends yet added to every object in it."""
    if isinstance(value, dict):
        return {
            **{key: add_unknown_fields(item) for key, item in value.items()},
            "x_added_next_year": {"nested": [1, "two", None]},
        }
    if isinstance(value, list):
        return [add_unknown_fields(item) for item in value]
    return value


def essentials(event: Event) -> dict[str, Any]:
    """An event without the parts kept verbatim (where an unknown field rightly shows up)."""
    dumped = event.model_dump(mode="json", exclude={"recorded_at"})
    data = dumped["data"]
    for verbatim in ("metadata", "dynamic_variables"):
        data.pop(verbatim, None)
    if data.get("analysis"):
        data["analysis"].pop("data_collected")
        data["analysis"].pop("evaluation")
    return dumped


@pytest.mark.parametrize(("fixture", "parse"), PRODUCING, ids=[name for name, _ in PRODUCING])
def test_a_redelivered_webhook_gives_the_same_events(fixture: str, parse: Parser) -> None:
    first = parse(load(fixture), RECEIVED)
    again = parse(load(fixture), LATER)
    assert first.events
    assert [event.id for event in again.events] == [event.id for event in first.events]
    # ElevenLabs' initiation request carries no time: it happens when it is received.
    received_times = {"recorded_at", "occurred_at"} if fixture == "elevenlabs_initiation" else set()
    for one, other in zip(first.events, again.events, strict=True):
        assert other.data == one.data
        assert other.model_dump(exclude={"recorded_at", *received_times}) == one.model_dump(
            exclude={"recorded_at", *received_times}
        )
        assert (one.recorded_at, other.recorded_at) == (RECEIVED, LATER)
    assert (again.kind, again.conversation_id, again.subject) == (
        first.kind,
        first.conversation_id,
        first.subject,
    )


def parse_for(
    fixture: str, tenant: str, legacy_ids_before: datetime | None = None
) -> NormalisedWebhook:
    """``fixture`` sent to ``tenant``, whose ``legacy_ids_before`` is given."""
    body = load(fixture)
    if fixture == "elevenlabs_initiation":
        return elevenlabs.parse_initiation(
            tenant, body, received_at=RECEIVED, legacy_ids_before=legacy_ids_before
        )
    parse = {
        "elevenlabs": elevenlabs.parse_post_call,
        "vapi": vapi.parse_server_message,
        "retell": retell.parse_webhook,
    }[fixture.split("_")[0]]
    return parse(tenant, body, received_at=RECEIVED, legacy_ids_before=legacy_ids_before)


@pytest.mark.parametrize("fixture", [name for name, _ in PRODUCING])
def test_the_same_webhook_sent_to_two_tenants_is_two_events(fixture: str) -> None:
    staging, production = parse_for(fixture, "acme-staging"), parse_for(fixture, "acme")
    assert staging.events and len(staging.events) == len(production.events)
    for one, other in zip(staging.events, production.events, strict=True):
        assert one.id != other.id
        if other.topic == "live":
            continue  # a live event's id names the message within the call as well
        platform, webhook_type = production.kind.split(".", 1)
        assert other.id == tenant_event_id(
            "acme", platform, webhook_type, other.data.conversation_id
        )


@pytest.mark.parametrize("fixture", [name for name, _ in PRODUCING])
def test_a_tenant_from_before_the_upgrade_keeps_the_earlier_ids_of_earlier_calls(
    fixture: str,
) -> None:
    # Every fixture's call happened in October 2025.
    earlier = parse_for(fixture, TENANT, legacy_ids_before=datetime(2030, 1, 1, tzinfo=UTC))
    later = parse_for(fixture, TENANT, legacy_ids_before=datetime(2020, 1, 1, tzinfo=UTC))
    platform, webhook_type = earlier.kind.split(".", 1)
    for old, new in zip(earlier.events, later.events, strict=True):
        if old.topic == "live":
            assert old == new  # new types: no event of theirs was appended before
            continue
        conversation_id = old.data.conversation_id
        assert old.id == derived_event_id(platform, webhook_type, conversation_id)
        assert new.id == tenant_event_id(TENANT, platform, webhook_type, conversation_id)
        assert old.model_dump(exclude={"id"}) == new.model_dump(exclude={"id"})


def test_the_earlier_ids_are_those_the_previous_release_appended() -> None:
    # Computed by the release before the tenant was part of webhook event ids: a
    # redelivery of these calls must still be the event in the log.
    before_upgrade = datetime(2030, 1, 1, tzinfo=UTC)
    vapi_ended = parse_for("vapi_end_of_call_report", TENANT, before_upgrade).events[0]
    eleven_ended = parse_for(
        "elevenlabs_post_call_transcription", "another-tenant", before_upgrade
    ).events[0]
    assert str(vapi_ended.id) == "b93ef6cc-920f-55eb-a4ba-12a7cd568e16"
    assert str(eleven_ended.id) == "2fed0318-d043-5495-99e0-67c3a7e433ee"


@pytest.mark.parametrize(("fixture", "parse"), ALL, ids=[name for name, _ in ALL])
def test_unknown_fields_anywhere_are_ignored(fixture: str, parse: Parser) -> None:
    plain = parse(load(fixture), RECEIVED)
    extended = parse(add_unknown_fields(load(fixture)), RECEIVED)
    assert [essentials(event) for event in extended.events] == [
        essentials(event) for event in plain.events
    ]
    assert (extended.kind, extended.conversation_id, extended.subject) == (
        plain.kind,
        plain.conversation_id,
        plain.subject,
    )


@pytest.mark.parametrize(("fixture", "parse"), ALL, ids=[name for name, _ in ALL])
def test_parsing_does_not_modify_the_body(fixture: str, parse: Parser) -> None:
    body = load(fixture)
    result = parse(body, RECEIVED)
    assert body == load(fixture)
    # Nor does the body share state with the events built from it.
    for event in result.events:
        before = event.model_dump()
        for value in body.values():
            if isinstance(value, dict):
                value.clear()
        assert event.model_dump() == before


@pytest.mark.parametrize(("fixture", "parse"), PRODUCING, ids=[name for name, _ in PRODUCING])
def test_every_event_survives_the_wire(fixture: str, parse: Parser) -> None:
    for event in parse(load(fixture), RECEIVED).events:
        assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize(
    "parse",
    [
        lambda: elevenlabs.parse_post_call(TENANT, {}, received_at=datetime(2025, 1, 1)),
        lambda: elevenlabs.parse_initiation(TENANT, {}, received_at=datetime(2025, 1, 1)),
        lambda: vapi.parse_server_message(TENANT, {}, received_at=datetime(2025, 1, 1)),
        lambda: retell.parse_webhook(TENANT, {}, received_at=datetime(2025, 1, 1)),
    ],
)
def test_a_naive_received_at_is_a_programming_error(parse: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware") as caught:
        parse()
    assert not isinstance(caught.value, PayloadError)


def test_payload_error_keeps_its_path_through_pickling() -> None:
    error = PayloadError("data.transcript[3].time_in_call_secs", "must be a number, got a string")
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.path, copied.message, str(copied)) == (error.path, error.message, str(error))
    assert str(error) == "data.transcript[3].time_in_call_secs: must be a number, got a string"
    assert error.code == "invalid_payload"


# ------------------------------------------------- what no read model can store

PARSERS: dict[str, Callable[[dict[str, Any]], NormalisedWebhook]] = {
    "elevenlabs_post_call_transcription": eleven_post_call,
    "elevenlabs_initiation": eleven_initiation,
    "vapi_end_of_call_report": vapi_message,
    "retell_call_analyzed": retell_webhook,
}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set the field at the dotted ``path`` (``[i]`` for list elements) of a body."""

    def change(body: dict[str, Any]) -> None:
        parts = path.replace("[", ".").replace("]", "").split(".")
        node: Any = body
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[parts[-1]] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        parent, _, name = path.rpartition(".")
        node: Any = body
        for part in parent.split("."):
            node = node[part]
        node.pop(name)

    return change


ELEVEN = "elevenlabs_post_call_transcription"
VAPI = "vapi_end_of_call_report"
RETELL = "retell_call_analyzed"
NUL = "\x00"


@pytest.mark.parametrize(
    ("fixture", "change", "path"),
    [
        # PostgreSQL text holds no NUL: wherever it is, the field holding it is named.
        (ELEVEN, _set("data.transcript[1].message", f"peni{NUL}lin"), "data.transcript[1].message"),
        (ELEVEN, _set("data.metadata.note", f"x{NUL}y"), "data.metadata.note"),
        (ELEVEN, _set("data.metadata.deep", {"a": [1, f"x{NUL}"]}), "data.metadata.deep.a[1]"),
        (ELEVEN, _set("data.metadata.deep", {f"no{NUL}te": 1}), "data.metadata.deep"),
        (ELEVEN, _set("data.analysis.transcript_summary", NUL), "data.analysis.transcript_summary"),
        (ELEVEN, _set("data.analysis.evaluation_criteria_results", {"k": NUL}),
         "data.analysis.evaluation_criteria_results.k"),
        (ELEVEN, _set("data.status", f"done{NUL}"), "data.status"),
        (ELEVEN, _set("data.conversation_id", f"conv{NUL}"), "data.conversation_id"),
        # ... and in JSON text that is kept parsed, into which the path goes on.
        (ELEVEN, _set("data.transcript[4].tool_calls[0].params_as_json", '{"a": "\\u0000"}'),
         "data.transcript[4].tool_calls[0].params_as_json.a"),
        (ELEVEN, _set("data.conversation_initiation_client_data.dynamic_variables.x", NUL),
         "data.conversation_initiation_client_data.dynamic_variables.x"),
        ("elevenlabs_initiation", _set("caller_id", f"+1415{NUL}"), "caller_id"),
        (VAPI, _set("message.endedReason", NUL), "message.endedReason"),
        (VAPI, _set("message.costBreakdown", {NUL: 1}), "message.costBreakdown"),
        (RETELL, _set("call.transcript_object[0].content", NUL),
         "call.transcript_object[0].content"),
        (RETELL, _set("call.metadata", {"k": [NUL]}), "call.metadata.k[0]"),
        # Ids are indexed: at most 256 characters.
        (ELEVEN, _set("data.conversation_id", "c" * 257), "data.conversation_id"),
        (ELEVEN, _set("data.user_id", "u" * 257), "data.user_id"),
        (ELEVEN, _set("data.agent_id", "a" * 257), "data.agent_id"),
        ("elevenlabs_initiation", _set("call_sid", "c" * 257), "call_sid"),
        (VAPI, _set("message.call.id", "c" * 257), "message.call.id"),
        (RETELL, _set("call.call_id", "c" * 257), "call.call_id"),
        # Points in time: 1970-01-01..2200-01-01 UTC, before and after date arithmetic.
        (ELEVEN, _set("data.metadata.start_time_unix_secs", 253_402_300_799),
         "data.metadata.start_time_unix_secs"),
        (ELEVEN, _set("data.metadata.start_time_unix_secs", -1),
         "data.metadata.start_time_unix_secs"),
        (ELEVEN, _set("data.metadata.start_time_unix_secs", 7_258_118_400 - 10),
         "data.metadata.call_duration_secs"),
        (VAPI, _set("message.endedAt", "0001-01-01T00:00:01Z"), "message.endedAt"),
        (VAPI, _set("message.startedAt", "0001-01-01T00:00:00+14:00"), "message.startedAt"),
        (VAPI, _set("message.endedAt", "9999-12-31T23:59:59-14:00"), "message.endedAt"),
        (VAPI, _set("message.startedAt", 1e300), "message.startedAt"),
        (RETELL, _set("call.start_timestamp", 253_402_300_799_000), "call.start_timestamp"),
        # Durations: no call lasts a week, however it is told.
        (VAPI, lambda b: [_drop(f"message.{k}")(b) for k in ("durationSeconds", "durationMs")]
         and _set("message.endedAt", "2025-10-22T17:10:19Z")(b), "message.endedAt"),
        (RETELL, _set("call.end_timestamp", RETELL_START_MS + 8 * 24 * 3600 * 1000),
         "call.end_timestamp"),
    ],
)  # fmt: skip
def test_what_no_read_model_can_store_is_refused_naming_the_field(
    fixture: str, change: Callable[[dict[str, Any]], object], path: str
) -> None:
    body = load(fixture)
    change(body)
    assert payload_error(lambda: PARSERS[fixture](body)).path == path


def test_an_id_of_256_characters_and_the_edges_of_time_are_accepted() -> None:
    body = load(ELEVEN)
    body["data"]["conversation_id"] = "c" * 256  # the caller is anonymous: anonymous-c...c
    del body["data"]["metadata"]["phone_call"]
    del body["data"]["conversation_initiation_client_data"]["dynamic_variables"][
        "system__caller_id"
    ]
    body["data"]["metadata"]["start_time_unix_secs"] = 0
    event = ended(eleven_post_call(body))
    assert event.subject == f"{TENANT}/anonymous-{'c' * 256}"
    assert event.data.started_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert decode_event(encode_event(event)) == event


def test_a_live_turn_said_later_than_any_call_lasts_gives_no_event() -> None:
    """A mid-call message is a signal, not the record of the call: one memstream cannot
    store is acknowledged without an event, as one of the wrong shape is."""
    body = vapi_live(
        {"type": "transcript", "transcriptType": "final", "role": "user", "transcript": "hi",
         "timestamp": "2025-10-22T17:10:00Z"},
        startedAt="2025-10-14T17:10:00Z",
    )  # fmt: skip
    assert vapi_message(body).events == []
