"""What every platform adapter returns, and the envelope rules they all follow.

Platforms send no event id, so an event's id is derived from what identifies
the webhook: ``derived_event_id(platform, webhook type, conversation or call id)``.
A redelivered webhook therefore yields the same event — same id, same ``data``,
same ``occurred_at`` — and projections, which dedupe by id, apply it once. Only
``recorded_at`` (the time memstream received it) differs between deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from schemas import Event, EventData, Source, derived_event_id

__all__ = ["NormalisedWebhook", "platform_event", "require_aware"]

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class NormalisedWebhook:
    """A platform's webhook turned into memstream events (possibly none)."""

    events: list[Event]
    """To append, in order; empty for webhooks memstream only acknowledges."""
    kind: str
    """``<platform>.<webhook type>``, e.g. ``elevenlabs.post_call_transcription``."""
    conversation_id: str | None
    """The platform's conversation or call id, when the body names one."""
    subject: str | None
    """The caller's subject (``tenant/user``) when the webhook produced events."""


def require_aware(received_at: datetime) -> datetime:
    """``received_at`` itself; a naive datetime is a programming error, not a bad payload."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    return received_at


def platform_event(
    event_class: type[E],
    *,
    platform: str,
    webhook_type: str,
    tenant: str,
    subject: str,
    conversation_id: str,
    agent_id: str | None,
    occurred_at: datetime,
    received_at: datetime,
    data: EventData,
) -> E:
    """Build an event of ``event_class`` with the envelope every platform webhook gets."""
    return event_class.create(
        id=derived_event_id(platform, webhook_type, conversation_id),
        tenant=tenant,
        subject=subject,
        data=data,
        source=Source(platform=platform, event_id=conversation_id, agent_id=agent_id),
        occurred_at=occurred_at,
        recorded_at=received_at,
        correlation_id=conversation_id,
    )
