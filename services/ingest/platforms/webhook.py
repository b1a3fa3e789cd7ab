"""What every platform adapter returns, and the envelope rules they all follow.

Platforms send no event id, so an event's id is derived from what identifies
the webhook and the tenant it was sent to: ``tenant_event_id(tenant, platform,
webhook type, conversation or call id)``. A redelivered webhook therefore yields the
same event — same id, same ``data``, same ``occurred_at`` — and projections, which
dedupe by tenant and id, apply it once; the same call sent to two tenants is two
events. Only ``recorded_at`` (the time memstream received it) differs between
deliveries.

Before the tenant was part of the id, it was ``derived_event_id(platform, webhook
type, conversation or call id)``. A tenant that existed then has ``legacy_ids_before``
(migration 0007): its events that occurred before that instant keep the earlier id,
so a webhook of an earlier call, redelivered or imported after the upgrade, is the
event already in the log (docs/architecture.md, "Ids and tenants").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from schemas import Event, EventData, Source, derived_event_id, tenant_event_id

__all__ = ["NormalisedWebhook", "platform_event", "require_aware", "webhook_event_id"]

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


def webhook_event_id(
    *,
    tenant: str,
    platform: str,
    webhook_type: str,
    conversation_id: str,
    occurred_at: datetime,
    legacy_ids_before: datetime | None = None,
) -> uuid.UUID:
    """The id of the event a platform webhook becomes (see the module docstring).

    ``legacy_ids_before`` is the tenant's (``None`` for tenants created since the
    tenant became part of the id): events that occurred before it keep the id of
    before, without the tenant.
    """
    if legacy_ids_before is not None and occurred_at < legacy_ids_before:
        return derived_event_id(platform, webhook_type, conversation_id)
    return tenant_event_id(tenant, platform, webhook_type, conversation_id)


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
    legacy_ids_before: datetime | None = None,
) -> E:
    """Build an event of ``event_class`` with the envelope every platform webhook gets."""
    return event_class.create(
        id=webhook_event_id(
            tenant=tenant,
            platform=platform,
            webhook_type=webhook_type,
            conversation_id=conversation_id,
            occurred_at=occurred_at,
            legacy_ids_before=legacy_ids_before,
        ),
        tenant=tenant,
        subject=subject,
        data=data,
        source=Source(platform=platform, event_id=conversation_id, agent_id=agent_id),
        occurred_at=occurred_at,
        recorded_at=received_at,
        correlation_id=conversation_id,
    )
