"""Who a conversation is about: the caller's subject (``tenant/user``) and phone number.

The subject is the Kafka key and the unit of erasure, so every adapter must name
the same caller the same way:

1. the platform's user id, when the customer passes one (it is the customer's
   own, stable name for the person);
2. else the caller's phone number in E.164 form, e.g. ``acme/+14155550123``;
3. else a subject of its own for this one conversation,
   ``acme/anonymous-<conversation id>``, so memories of unidentified callers
   are never pooled together.
"""

from __future__ import annotations

import logging
import re

import phonenumbers

__all__ = ["anonymous_subject", "caller_subject", "normalise_phone"]

logger = logging.getLogger(__name__)

# A subject must match "^<tenant>/.+$", and "." does not match a line break.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def normalise_phone(raw: str | None, default_region: str | None = None) -> str | None:
    """``raw`` as an E.164 number (``+14155550123``), or ``None`` if it is not a valid one.

    Only a number written with its country code (a leading ``+``) is parsed without
    a region; any other is read as a national number of ``default_region`` (an ISO
    3166 code such as ``"US"``), and without one it is not a number we can place.
    Caller ids such as ``anonymous``, SIP URIs and numbers in no assigned range
    (``+1 555 010 0000``: 555 is not an area code) give ``None``.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    if text.startswith("+"):
        region = None
    elif default_region:
        region = default_region.upper()  # phonenumbers knows regions in capitals only
    else:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    # Validity, not mere plausibility: a placeholder such as +1 111 111 1111 sent
    # for every withheld caller would otherwise pool strangers' memories under
    # one subject. The cost: a number from a range newer than the library's
    # metadata is anonymous until phonenumbers is upgraded.
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def anonymous_subject(tenant: str, conversation_id: str) -> str:
    """The subject of a caller nothing identifies: one per conversation."""
    return f"{tenant}/anonymous-{conversation_id}"


def caller_subject(
    tenant: str,
    *,
    user_id: str | None,
    phone: str | None,
    conversation_id: str,
    default_region: str | None = None,
) -> tuple[str, str | None]:
    """Return ``(subject, caller's E.164 number or None)`` for a conversation's caller.

    ``user_id`` wins when it is not blank (it is stripped); else the phone number,
    normalised with :func:`normalise_phone`; else :func:`anonymous_subject`. The
    number is returned whenever it is valid, also when the user id names the
    subject. Raises ``ValueError`` for a user id with a control character, which
    no subject can hold.
    """
    e164 = normalise_phone(phone, default_region)
    user = user_id.strip() if user_id is not None else ""
    if user:
        if _CONTROL_CHARACTER.search(user):
            raise ValueError("a user id must not contain control characters")
        return f"{tenant}/{user}", e164
    if e164 is not None:
        return f"{tenant}/{e164}", e164
    if phone is not None and phone.strip():
        # Not the number itself: it is personal data and this goes to the logs.
        logger.debug("conversation %s: caller number is not a valid phone number", conversation_id)
    return anonymous_subject(tenant, conversation_id), None
