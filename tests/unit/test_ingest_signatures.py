"""Webhook signature checks: the platforms' schemes, rotation, freshness, hostile headers."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.signatures import (
    SignatureError,
    sign_elevenlabs,
    sign_retell,
    sign_vapi_hmac,
    verify_bearer,
    verify_elevenlabs,
    verify_retell,
    verify_vapi,
)

# A known-answer test vector for the signature scheme (docs/ingest.md).
VECTOR_SECRET = "wsec_test"
VECTOR_T = 1739537297
VECTOR_BODY = (
    b'{"type":"post_call_transcription","event_timestamp":1739537297,'
    b'"data":{"agent_id":"xyz","conversation_id":"abc"}}'
)
VECTOR_V0 = "3c1759532b83d15efcd752edb7579aa6ee8a260d8a5cfc29a3fa93435bcc4d73"

NOW = 1_739_537_300.0
BODY = b'{"message":{"type":"end-of-call-report","call":{"id":"call-1"}}}'
OLD_SECRET = "whsec_old"
NEW_SECRET = "whsec_new"


def raises_code(code: str, verify: Callable[[], None]) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        verify()
    assert caught.value.code == code, caught.value
    return caught.value


def flip_one_byte(body: bytes) -> bytes:
    return body[:10] + bytes([body[10] ^ 0x01]) + body[11:]


# --- ElevenLabs ------------------------------------------------------------------


def test_sign_elevenlabs_reproduces_the_platforms_test_vector() -> None:
    assert sign_elevenlabs(VECTOR_SECRET, VECTOR_BODY, VECTOR_T) == f"t={VECTOR_T},v0={VECTOR_V0}"


def test_verify_elevenlabs_accepts_the_platforms_test_vector() -> None:
    headers = {"ElevenLabs-Signature": f"t={VECTOR_T},v0={VECTOR_V0}"}
    verify_elevenlabs(headers, VECTOR_BODY, [VECTOR_SECRET], now=VECTOR_T + 1.5)


@pytest.mark.parametrize(
    "name", ["ElevenLabs-Signature", "elevenlabs-signature", "ELEVENLABS-SIGNATURE"]
)
def test_elevenlabs_header_name_is_case_insensitive(name: str) -> None:
    headers = {"Content-Type": "application/json", name: sign_elevenlabs(NEW_SECRET, BODY, 1000)}
    verify_elevenlabs(headers, BODY, [NEW_SECRET], now=1001)


@pytest.mark.parametrize("signing_secret", [OLD_SECRET, NEW_SECRET])
def test_elevenlabs_accepts_either_secret_during_rotation(signing_secret: str) -> None:
    headers = {"ElevenLabs-Signature": sign_elevenlabs(signing_secret, BODY, 1000)}
    verify_elevenlabs(headers, BODY, [OLD_SECRET, NEW_SECRET], now=1001)


@pytest.mark.parametrize("valid_part", ["first", "second"])
def test_elevenlabs_accepts_a_header_with_several_v0_parts(valid_part: str) -> None:
    good = sign_elevenlabs(NEW_SECRET, BODY, 1000).split("v0=")[1]
    other = sign_elevenlabs("some-other-secret", BODY, 1000).split("v0=")[1]
    parts = [good, other] if valid_part == "first" else [other, good]
    headers = {"ElevenLabs-Signature": f"t=1000,v0={parts[0]},v0={parts[1]}"}
    verify_elevenlabs(headers, BODY, [NEW_SECRET], now=1001)


def test_elevenlabs_ignores_unknown_signature_schemes_next_to_v0() -> None:
    header = sign_elevenlabs(NEW_SECRET, BODY, 1000) + ",v1=whatever"
    verify_elevenlabs({"ElevenLabs-Signature": header}, BODY, [NEW_SECRET], now=1001)


def test_elevenlabs_one_byte_change_of_body_is_refused() -> None:
    headers = {"ElevenLabs-Signature": sign_elevenlabs(NEW_SECRET, BODY, 1000)}
    raises_code(
        "bad_signature",
        lambda: verify_elevenlabs(headers, flip_one_byte(BODY), [NEW_SECRET], now=1001),
    )


def test_elevenlabs_signature_from_an_unconfigured_secret_is_refused() -> None:
    headers = {"ElevenLabs-Signature": sign_elevenlabs("retired-secret", BODY, 1000)}
    raises_code(
        "bad_signature",
        lambda: verify_elevenlabs(headers, BODY, [OLD_SECRET, NEW_SECRET], now=1001),
    )


def test_elevenlabs_timestamp_is_part_of_the_signed_message() -> None:
    signed = sign_elevenlabs(NEW_SECRET, BODY, 1000)
    headers = {"ElevenLabs-Signature": signed.replace("t=1000", "t=1001")}
    raises_code("bad_signature", lambda: verify_elevenlabs(headers, BODY, [NEW_SECRET], now=1001))


def test_elevenlabs_timestamp_just_inside_tolerance_is_accepted() -> None:
    headers = {"ElevenLabs-Signature": sign_elevenlabs(NEW_SECRET, BODY, 10_000)}
    verify_elevenlabs(headers, BODY, [NEW_SECRET], now=10_000 + 1800 - 1)
    verify_elevenlabs(headers, BODY, [NEW_SECRET], now=10_000 + 100 - 1, tolerance_s=100)


def test_elevenlabs_timestamp_just_beyond_tolerance_is_stale() -> None:
    headers = {"ElevenLabs-Signature": sign_elevenlabs(NEW_SECRET, BODY, 10_000)}
    raises_code(
        "stale_timestamp",
        lambda: verify_elevenlabs(headers, BODY, [NEW_SECRET], now=10_000 + 1800 + 1),
    )
    raises_code(
        "stale_timestamp",
        lambda: verify_elevenlabs(
            headers, BODY, [NEW_SECRET], now=10_000 + 100 + 1, tolerance_s=100
        ),
    )


def test_elevenlabs_timestamp_beyond_future_skew_is_refused() -> None:
    headers = {"ElevenLabs-Signature": sign_elevenlabs(NEW_SECRET, BODY, 10_000)}
    verify_elevenlabs(headers, BODY, [NEW_SECRET], now=10_000 - 60 + 1)
    raises_code(
        "future_timestamp",
        lambda: verify_elevenlabs(headers, BODY, [NEW_SECRET], now=10_000 - 60 - 1),
    )


def test_elevenlabs_forged_stale_request_reports_bad_signature_not_staleness() -> None:
    headers = {"ElevenLabs-Signature": sign_elevenlabs("forger", BODY, 10_000)}
    raises_code("bad_signature", lambda: verify_elevenlabs(headers, BODY, [NEW_SECRET], now=99_999))


@pytest.mark.parametrize(
    "headers",
    [{}, {"ElevenLabs-Signature": ""}, {"ElevenLabs-Signature": "   "}, {"Other": "t=1,v0=00"}],
)
def test_elevenlabs_absent_or_empty_header_is_missing_signature(headers: dict[str, str]) -> None:
    raises_code("missing_signature", lambda: verify_elevenlabs(headers, BODY, ["s"], now=NOW))


@pytest.mark.parametrize(
    "value",
    [
        "v0=" + "a" * 64,  # no t
        "t=abc,v0=" + "a" * 64,  # non-numeric t
        "t=-5,v0=" + "a" * 64,
        "t=1.5,v0=" + "a" * 64,
        "t=" + "9" * 5000 + ",v0=" + "a" * 64,  # past int()'s digit limit
        "t=1000",  # no v0
        "t=1000,v0=",
        "t=1000,v0=not-hex",
        "t=1000,v0=" + "a" * 63,
        "t=1,t=2,v0=" + "a" * 64,
        "garbage",
        ",,,",
        "t=\u0661\u0662,v0=" + "a" * 64,  # Arabic-Indic digits are not unix seconds
    ],
)
def test_elevenlabs_malformed_header_is_malformed_signature(value: str) -> None:
    headers = {"ElevenLabs-Signature": value}
    raises_code("malformed_signature", lambda: verify_elevenlabs(headers, BODY, ["s"], now=NOW))


def test_error_messages_never_contain_the_secret_or_the_expected_digest() -> None:
    secret = "whsec_super_secret_value"
    expected = sign_elevenlabs(secret, BODY, 1000).split("v0=")[1]
    forged = {"ElevenLabs-Signature": "t=1000,v0=" + "0" * 64}
    error = raises_code(
        "bad_signature", lambda: verify_elevenlabs(forged, BODY, [secret], now=1001)
    )
    for text in (str(error), repr(error), error.message):
        assert secret not in text and expected not in text

    wrong = {"X-Vapi-Secret": "guess"}
    error = raises_code("bad_signature", lambda: verify_vapi(wrong, BODY, secrets=[secret], now=1))
    assert secret not in str(error) and "guess" not in str(error)


# --- Vapi ------------------------------------------------------------------------


@pytest.mark.parametrize("presented", [OLD_SECRET, NEW_SECRET])
def test_vapi_plaintext_secret_header_is_accepted(presented: str) -> None:
    verify_vapi({"x-vapi-secret": presented}, BODY, secrets=[OLD_SECRET, NEW_SECRET], now=NOW)


@pytest.mark.parametrize("value", [f"Bearer {NEW_SECRET}", f"bearer {NEW_SECRET}"])
def test_vapi_bearer_credential_is_accepted(value: str) -> None:
    verify_vapi({"authorization": value}, BODY, secrets=[OLD_SECRET, NEW_SECRET], now=NOW)


def test_vapi_hmac_plan_with_seconds_timestamp_is_accepted() -> None:
    headers = sign_vapi_hmac(NEW_SECRET, BODY, int(NOW))
    verify_vapi(headers, BODY, secrets=[OLD_SECRET, NEW_SECRET], now=NOW)


def test_vapi_hmac_plan_with_milliseconds_timestamp_is_accepted() -> None:
    headers = sign_vapi_hmac(NEW_SECRET, BODY, int(NOW * 1000))
    verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW)


def test_vapi_hmac_header_names_are_case_insensitive() -> None:
    headers = {k.upper(): v for k, v in sign_vapi_hmac(NEW_SECRET, BODY, int(NOW)).items()}
    verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW)


@pytest.mark.parametrize("timestamp", [int(NOW) - 301, int(NOW * 1000) - 301_000])
def test_vapi_hmac_stale_timestamp_is_refused_in_either_unit(timestamp: int) -> None:
    headers = sign_vapi_hmac(NEW_SECRET, BODY, timestamp)
    raises_code(
        "stale_timestamp", lambda: verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW)
    )


@pytest.mark.parametrize("timestamp", [int(NOW) + 61, int(NOW * 1000) + 61_000])
def test_vapi_hmac_future_timestamp_is_refused_in_either_unit(timestamp: int) -> None:
    headers = sign_vapi_hmac(NEW_SECRET, BODY, timestamp)
    raises_code(
        "future_timestamp", lambda: verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW)
    )


def test_vapi_hmac_one_byte_change_of_body_is_refused() -> None:
    headers = sign_vapi_hmac(NEW_SECRET, BODY, int(NOW))
    raises_code(
        "bad_signature",
        lambda: verify_vapi(headers, flip_one_byte(BODY), secrets=[NEW_SECRET], now=NOW),
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Vapi-Secret": "wrong"},
        {"X-Vapi-Secret": ""},
        {"X-Vapi-Secret": NEW_SECRET + " "},
        {"Authorization": "Bearer wrong"},
        sign_vapi_hmac("wrong", BODY, int(NOW)),
    ],
)
def test_vapi_wrong_secret_is_refused_in_every_mode(headers: dict[str, str]) -> None:
    raises_code("bad_signature", lambda: verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW))


def test_vapi_hmac_without_timestamp_is_malformed() -> None:
    headers = sign_vapi_hmac(NEW_SECRET, BODY, int(NOW))
    del headers["x-timestamp"]
    raises_code(
        "malformed_signature", lambda: verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW)
    )


def test_vapi_non_bearer_authorization_is_malformed() -> None:
    headers = {"Authorization": f"Basic {NEW_SECRET}"}
    raises_code(
        "malformed_signature", lambda: verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW)
    )


def test_vapi_one_valid_credential_suffices_next_to_a_wrong_one() -> None:
    headers = {"X-Vapi-Secret": "wrong", **sign_vapi_hmac(NEW_SECRET, BODY, int(NOW))}
    verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW)


def test_vapi_several_wrong_credentials_are_a_bad_signature() -> None:
    headers = {"X-Vapi-Secret": "wrong", "Authorization": "Bearer wrong"}
    raises_code("bad_signature", lambda: verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW))


def test_vapi_without_any_credential_is_missing_credentials() -> None:
    headers = {"Content-Type": "application/json"}
    raises_code(
        "missing_credentials", lambda: verify_vapi(headers, BODY, secrets=[NEW_SECRET], now=NOW)
    )


# --- Retell ----------------------------------------------------------------------


def test_sign_retell_appends_the_timestamp_to_the_body_like_retells_sdk() -> None:
    digest = hmac.new(b"key_test", BODY + b"1739537297000", hashlib.sha256).hexdigest()
    assert sign_retell("key_test", BODY, 1739537297000) == f"v=1739537297000,d={digest}"


@pytest.mark.parametrize("signing_key", ["key_old", "key_new"])
def test_retell_signature_from_any_configured_api_key_is_accepted(signing_key: str) -> None:
    t_ms = int(NOW * 1000)
    headers = {"X-Retell-Signature": sign_retell(signing_key, BODY, t_ms)}
    verify_retell(headers, BODY, api_keys=["key_old", "key_new"], now=NOW)


def test_retell_one_byte_change_of_body_is_refused() -> None:
    headers = {"x-retell-signature": sign_retell("key_new", BODY, int(NOW * 1000))}
    raises_code(
        "bad_signature",
        lambda: verify_retell(headers, flip_one_byte(BODY), api_keys=["key_new"], now=NOW),
    )


def test_retell_signature_from_another_api_key_is_refused() -> None:
    headers = {"x-retell-signature": sign_retell("key_other", BODY, int(NOW * 1000))}
    raises_code(
        "bad_signature", lambda: verify_retell(headers, BODY, api_keys=["key_new"], now=NOW)
    )


def test_retell_timestamp_in_milliseconds_is_checked_for_freshness() -> None:
    t_ms = int(NOW * 1000)
    headers = {"x-retell-signature": sign_retell("key_new", BODY, t_ms)}
    verify_retell(headers, BODY, api_keys=["key_new"], now=NOW + 299)
    raises_code(
        "stale_timestamp",
        lambda: verify_retell(headers, BODY, api_keys=["key_new"], now=NOW + 301),
    )
    raises_code(
        "future_timestamp",
        lambda: verify_retell(headers, BODY, api_keys=["key_new"], now=NOW - 61),
    )


def test_retell_missing_header_is_missing_signature() -> None:
    raises_code("missing_signature", lambda: verify_retell({}, BODY, api_keys=["k"], now=NOW))


@pytest.mark.parametrize(
    "value", ["d=" + "a" * 64, "v=abc,d=" + "a" * 64, "v=1000", "v=1000,d=xyz", "garbage"]
)
def test_retell_malformed_header_is_malformed_signature(value: str) -> None:
    headers = {"x-retell-signature": value}
    raises_code(
        "malformed_signature", lambda: verify_retell(headers, BODY, api_keys=["k"], now=NOW)
    )


# --- Bearer ----------------------------------------------------------------------


@pytest.mark.parametrize("token", ["tok_old", "tok_new"])
def test_bearer_accepts_any_configured_token(token: str) -> None:
    verify_bearer({"authorization": f"Bearer {token}"}, ["tok_old", "tok_new"])


def test_bearer_wrong_token_is_refused() -> None:
    raises_code("bad_signature", lambda: verify_bearer({"Authorization": "Bearer nope"}, ["tok"]))


def test_bearer_missing_header_is_missing_credentials() -> None:
    raises_code("missing_credentials", lambda: verify_bearer({}, ["tok"]))


@pytest.mark.parametrize("value", ["tok", "Basic tok", "Bearer", "Bearer a b"])
def test_bearer_malformed_header_is_malformed_signature(value: str) -> None:
    raises_code("malformed_signature", lambda: verify_bearer({"Authorization": value}, ["tok"]))


# --- Configuration mistakes are not client errors ----------------------------------


def test_no_configured_secret_is_a_configuration_error_not_a_signature_error() -> None:
    headers = {"ElevenLabs-Signature": sign_elevenlabs("s", BODY, 1000)}
    with pytest.raises(ValueError):
        verify_elevenlabs(headers, BODY, [], now=1001)


def test_empty_configured_secret_never_authenticates_an_empty_credential() -> None:
    with pytest.raises(ValueError):
        verify_vapi({"X-Vapi-Secret": ""}, BODY, secrets=[""], now=NOW)


def test_a_bare_string_is_refused_where_a_list_of_secrets_is_expected() -> None:
    with pytest.raises(TypeError):
        verify_bearer({"Authorization": "Bearer a"}, "abc")


# --- Hostile input -----------------------------------------------------------------

HEADER_NAMES = st.sampled_from(
    [
        "ElevenLabs-Signature",
        "X-Vapi-Secret",
        "Authorization",
        "x-signature",
        "x-timestamp",
        "x-retell-signature",
        "X-Other",
    ]
)
SIGNATURE_LIKE = st.one_of(
    st.text(),
    st.from_regex(r"(t=|v0=|v=|d=|Bearer )[0-9a-fA-F,=.\-]{0,80}", fullmatch=True),
    st.builds(lambda t, d: f"t={t},v0={d}", st.integers(), st.text()),
)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(st.one_of(HEADER_NAMES, st.text()), SIGNATURE_LIKE, max_size=6),
    body=st.binary(max_size=64),
)
def test_random_headers_never_raise_anything_but_signature_error(
    headers: dict[str, str], body: bytes
) -> None:
    verifiers: list[Callable[[], None]] = [
        lambda: verify_elevenlabs(headers, body, ["s1", "s2"], now=NOW),
        lambda: verify_vapi(headers, body, secrets=["s1", "s2"], now=NOW),
        lambda: verify_retell(headers, body, api_keys=["s1", "s2"], now=NOW),
        lambda: verify_bearer(headers, ["s1", "s2"]),
    ]
    for verify in verifiers:
        try:
            verify()
        except SignatureError as error:
            assert error.code in {
                "missing_signature",
                "malformed_signature",
                "bad_signature",
                "stale_timestamp",
                "future_timestamp",
                "missing_credentials",
            }
