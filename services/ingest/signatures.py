"""Webhook authenticity checks for the voice platforms, and the matching signers.

Pure functions over the raw request body bytes and the request headers: no I/O, no
framework. The HTTP layer calls a ``verify_*`` function before it parses any JSON; the
function returns ``None`` when the request is authentic and raises ``SignatureError``
otherwise. ``SignatureError.code`` is machine-readable (for the response and a
counter); its message is safe to send back to the client, so it never contains a
secret, an expected digest, or the presented credential.

Schemes (the routes that use them: docs/ingest.md, "Routes"):

- ElevenLabs: ``ElevenLabs-Signature: t=<unix s>,v0=<hex>[,v0=<hex>...]``,
  ``v0 = HMAC-SHA256(secret, f"{t}." + body)``.
- Vapi: ``X-Vapi-Secret: <secret>``, ``Authorization: Bearer <secret>``, or the HMAC
  plan's default shape ``x-signature = HMAC-SHA256(secret, f"{x-timestamp}." + body)``.
- Retell: ``x-retell-signature: v=<unix ms>,d=<hex>``,
  ``d = HMAC-SHA256(api_key, body + str(v))``.
- Plain bearer tokens for the conversation-initiation webhook and our own APIs.

Every function accepts several keys at once, so that a secret can be rotated without
downtime: configure old and new, switch the platform over, then drop the old one.

Keys are server configuration, not client input: an empty key list, an empty key, or a
bare string where a list is expected raises ``ValueError``/``TypeError`` (a 500 from
the HTTP layer), never ``SignatureError``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = [
    "SignatureError",
    "SignatureErrorCode",
    "sign_elevenlabs",
    "sign_retell",
    "sign_vapi_hmac",
    "verify_bearer",
    "verify_elevenlabs",
    "verify_retell",
    "verify_vapi",
]

SignatureErrorCode = Literal[
    "missing_signature",
    "malformed_signature",
    "bad_signature",
    "stale_timestamp",
    "future_timestamp",
    "missing_credentials",
]

ELEVENLABS_HEADER = "ElevenLabs-Signature"
VAPI_SECRET_HEADER = "X-Vapi-Secret"
VAPI_SIGNATURE_HEADER = "x-signature"
VAPI_TIMESTAMP_HEADER = "x-timestamp"
RETELL_HEADER = "x-retell-signature"
AUTHORIZATION_HEADER = "Authorization"

# At most 15 digits: enough for unix milliseconds for the next ~30,000 years, and it
# keeps int() away from CPython's 4,300-digit limit, whose ValueError would otherwise
# escape as something other than SignatureError.
_UNSIGNED_INT = re.compile(r"[0-9]{1,15}")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_RETELL_SIGNATURE = re.compile(r"\s*v=([0-9]{1,15})\s*,\s*d=([0-9a-fA-F]{64})\s*")
_BEARER = re.compile(r"\s*bearer +(\S+)\s*", re.IGNORECASE)

# Vapi does not document whether x-timestamp is in seconds or milliseconds. The two
# readings cannot be confused by magnitude: 10**11 seconds is the year 5138 while
# 10**11 milliseconds is March 1973, so any value at or above it is milliseconds.
_VAPI_MS_THRESHOLD = 10**11


class SignatureError(Exception):
    """A webhook or API request failed authentication.

    ``code`` says why, for the response body and the rejection counter; ``message``
    (also ``str(error)``) is safe to return to the client.
    """

    def __init__(self, code: SignatureErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: SignatureErrorCode = code
        self.message = message

    def __repr__(self) -> str:
        return f"SignatureError(code={self.code!r}, message={self.message!r})"


# --- ElevenLabs ------------------------------------------------------------------


def sign_elevenlabs(secret: str, body: bytes, t: int) -> str:
    """The ``ElevenLabs-Signature`` header value ElevenLabs would send for ``body`` at ``t``."""
    return f"t={t},v0={_hmac_hex(secret, f'{t}.'.encode() + body)}"


def verify_elevenlabs(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_s: int = 1800,
    future_skew_s: int = 60,
) -> None:
    """Check an ElevenLabs post-call webhook against any of ``secrets``.

    ``tolerance_s`` defaults to the official SDK's 30 minutes. Every ``v0=`` part is a
    candidate, so ElevenLabs may sign with several secrets during a rotation.
    """
    keys = _keys(secrets, "secrets")
    value = _header(headers, ELEVENLABS_HEADER)
    if value is None or not value.strip():
        raise SignatureError("missing_signature", f"the {ELEVENLABS_HEADER} header is missing")

    t_text: str | None = None
    candidates: list[bytes] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, field = part.partition("=")
        if not sep:
            raise _malformed(ELEVENLABS_HEADER, "expected comma-separated key=value parts")
        name, field = name.strip(), field.strip()
        if name == "t":
            if t_text is not None:
                raise _malformed(ELEVENLABS_HEADER, "more than one t= part")
            t_text = field
        elif name == "v0":
            if not _SHA256_HEX.fullmatch(field):
                raise _malformed(ELEVENLABS_HEADER, "v0= must be a hex SHA-256 digest")
            candidates.append(field.lower().encode())
        # Other keys are ignored: a future scheme (v1=...) must not break v0 receivers.
    if t_text is None or not _UNSIGNED_INT.fullmatch(t_text):
        raise _malformed(ELEVENLABS_HEADER, "t= must be unix seconds")
    if not candidates:
        raise _malformed(ELEVENLABS_HEADER, "no v0= signature")

    # The message is the timestamp exactly as sent, then the raw body bytes.
    message = f"{t_text}.".encode() + body
    if not _any_match(candidates, [_hmac_hex(key, message).encode() for key in keys]):
        raise SignatureError("bad_signature", f"the {ELEVENLABS_HEADER} signature does not match")
    # Freshness is checked after the signature on purpose: a stale_timestamp then
    # always means "authentic but late" (a replay, a late retry, a skewed clock), which
    # is what that counter should measure, rather than noise from forged requests.
    _check_fresh(int(t_text), now=now, tolerance_s=tolerance_s, future_skew_s=future_skew_s)


# --- Vapi ------------------------------------------------------------------------


def sign_vapi_hmac(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers of Vapi's default HMAC plan (sha256, hex, ``{timestamp}.{body}``)."""
    return {
        VAPI_SIGNATURE_HEADER: _hmac_hex(secret, f"{timestamp}.".encode() + body),
        VAPI_TIMESTAMP_HEADER: str(timestamp),
    }


def verify_vapi(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str],
    now: float,
    tolerance_s: int = 300,
    future_skew_s: int = 60,
) -> None:
    """Check a Vapi server message: any one valid credential among those present suffices.

    Accepted, each against every configured secret: ``X-Vapi-Secret`` (plaintext),
    ``Authorization: Bearer``, and the HMAC plan in its default shape (``x-signature`` =
    hex HMAC-SHA256 over ``f"{x-timestamp}."`` + body). Non-default HMAC plans (sha512,
    base64, a signature prefix, another payload format) are not supported.
    """
    keys = _keys(secrets, "secrets")
    failures: list[SignatureError] = []

    # 1. Plaintext shared secret.
    presented_secret = _header(headers, VAPI_SECRET_HEADER)
    if presented_secret is not None:
        if _any_match([_utf8(presented_secret)], [_utf8(key) for key in keys]):
            return
        failures.append(
            SignatureError("bad_signature", f"the {VAPI_SECRET_HEADER} header is not valid")
        )

    # 2. Bearer credential configured as a custom header on the server URL.
    if _header(headers, AUTHORIZATION_HEADER) is not None:
        try:
            verify_bearer(headers, keys)
            return
        except SignatureError as error:
            failures.append(error)

    # 3. HMAC plan.
    signature = _header(headers, VAPI_SIGNATURE_HEADER)
    if signature is not None:
        try:
            _verify_vapi_hmac(
                headers,
                body,
                signature,
                keys,
                now=now,
                tolerance_s=tolerance_s,
                future_skew_s=future_skew_s,
            )
            return
        except SignatureError as error:
            failures.append(error)

    if not failures:
        raise SignatureError(
            "missing_credentials",
            f"no {VAPI_SECRET_HEADER}, Authorization or {VAPI_SIGNATURE_HEADER} header",
        )
    if len(failures) == 1:
        raise failures[0]
    raise SignatureError("bad_signature", "none of the presented Vapi credentials is valid")


def _verify_vapi_hmac(
    headers: Mapping[str, str],
    body: bytes,
    signature: str,
    keys: Sequence[str],
    *,
    now: float,
    tolerance_s: int,
    future_skew_s: int,
) -> None:
    signature = signature.strip()
    if not _SHA256_HEX.fullmatch(signature):
        raise _malformed(VAPI_SIGNATURE_HEADER, "expected a hex SHA-256 digest")
    # A signature without its timestamp could be replayed forever: refuse it.
    timestamp = (_header(headers, VAPI_TIMESTAMP_HEADER) or "").strip()
    if not _UNSIGNED_INT.fullmatch(timestamp):
        raise _malformed(VAPI_TIMESTAMP_HEADER, "expected unix seconds or milliseconds")

    # The timestamp is signed exactly as sent, whatever its unit.
    message = f"{timestamp}.".encode() + body
    expected = [_hmac_hex(key, message).encode() for key in keys]
    if not _any_match([signature.lower().encode()], expected):
        raise SignatureError(
            "bad_signature", f"the {VAPI_SIGNATURE_HEADER} signature does not match"
        )
    value = int(timestamp)
    seconds = value / 1000 if value >= _VAPI_MS_THRESHOLD else float(value)
    _check_fresh(seconds, now=now, tolerance_s=tolerance_s, future_skew_s=future_skew_s)


# --- Retell ----------------------------------------------------------------------


def sign_retell(api_key: str, body: bytes, t_ms: int) -> str:
    """The ``x-retell-signature`` header value Retell's SDK would produce at ``t_ms``."""
    return f"v={t_ms},d={_hmac_hex(api_key, body + str(t_ms).encode())}"


def verify_retell(
    headers: Mapping[str, str],
    body: bytes,
    *,
    api_keys: Sequence[str],
    now: float,
    tolerance_s: int = 300,
    future_skew_s: int = 60,
) -> None:
    """Check a Retell webhook against any of ``api_keys``.

    The signed message follows Retell's official SDKs (``retell-sdk`` for Python and
    TypeScript, ``webhook_auth``): ``HMAC-SHA256(api_key, body + str(v))`` in hex, the
    timestamp appended to the body with no separator. This order is unconfirmed
    against Retell's own documentation, and no source was found for any
    other order, so no other reading is accepted. The SDKs verify a JSON string the
    caller re-serialises; this function verifies the raw bytes, which is the same
    thing as long as Retell signs exactly the body it sends.

    The SDKs allow 5 minutes of skew in both directions; here the future side is the
    tighter ``future_skew_s``.
    """
    keys = _keys(api_keys, "api_keys")
    value = _header(headers, RETELL_HEADER)
    if value is None or not value.strip():
        raise SignatureError("missing_signature", f"the {RETELL_HEADER} header is missing")
    match = _RETELL_SIGNATURE.fullmatch(value)
    if match is None:
        raise _malformed(RETELL_HEADER, "expected v=<unix ms>,d=<hex digest>")
    t_text, digest = match.group(1), match.group(2)

    message = body + t_text.encode()
    expected = [_hmac_hex(key, message).encode() for key in keys]
    if not _any_match([digest.lower().encode()], expected):
        raise SignatureError("bad_signature", f"the {RETELL_HEADER} signature does not match")
    _check_fresh(int(t_text) / 1000, now=now, tolerance_s=tolerance_s, future_skew_s=future_skew_s)


# --- Bearer tokens ---------------------------------------------------------------


def verify_bearer(headers: Mapping[str, str], tokens: Sequence[str]) -> None:
    """Check ``Authorization: Bearer <token>`` against any of ``tokens``, in constant time."""
    keys = _keys(tokens, "tokens")
    value = _header(headers, AUTHORIZATION_HEADER)
    if value is None or not value.strip():
        raise SignatureError("missing_credentials", "the Authorization header is missing")
    match = _BEARER.fullmatch(value)
    if match is None:
        raise _malformed(AUTHORIZATION_HEADER, "expected Bearer <token>")
    if not _any_match([_utf8(match.group(1))], [_utf8(key) for key in keys]):
        raise SignatureError("bad_signature", "the bearer token is not valid")


# --- Shared helpers --------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The first header called ``name``, ignoring case, whatever kind of mapping it is."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _keys(keys: Sequence[str], what: str) -> Sequence[str]:
    # A bare string is a Sequence[str] too: each character would become a "secret".
    if isinstance(keys, str):
        raise TypeError(f"{what} must be a sequence of strings, not a single string")
    if not keys:
        raise ValueError(f"no {what} configured")
    # An empty secret would make an empty X-Vapi-Secret or bearer token authentic.
    if any(not key for key in keys):
        raise ValueError(f"{what} contains an empty value")
    return keys


def _hmac_hex(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _utf8(text: str) -> bytes:
    # surrogatepass: a header value can hold any code point, and encoding must not
    # raise a UnicodeEncodeError where a SignatureError is expected.
    return text.encode("utf-8", "surrogatepass")


def _any_match(presented: Sequence[bytes], expected: Sequence[bytes]) -> bool:
    """Whether any presented value equals any expected one.

    Every pair is compared, in constant time, with no early exit, so the response
    time says nothing about which key (if any) matched. ``compare_digest`` still returns
    early on a length mismatch, which reveals only the length, never the content.
    """
    matched = False
    for candidate in presented:
        for reference in expected:
            matched |= hmac.compare_digest(candidate, reference)
    return matched


def _check_fresh(t: float, *, now: float, tolerance_s: int, future_skew_s: int) -> None:
    if now - t > tolerance_s:
        raise SignatureError(
            "stale_timestamp", f"the signature timestamp is more than {tolerance_s} s old"
        )
    if t - now > future_skew_s:
        raise SignatureError(
            "future_timestamp",
            f"the signature timestamp is more than {future_skew_s} s in the future",
        )


def _malformed(header: str, expected: str) -> SignatureError:
    return SignatureError("malformed_signature", f"the {header} header is malformed: {expected}")
