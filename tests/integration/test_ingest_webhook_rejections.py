"""Every way the ingest service refuses a platform webhook, over HTTP, on real infrastructure.

Each refusal is checked four ways: the HTTP status, the machine-readable ``error.code``
(with ``error.message``, and ``error.path`` for a body of the wrong shape) in a JSON
body, the Prometheus counters (``memstream_ingest_rejected_total{route,code}`` and, for
credentials, ``memstream_ingest_signature_failures_total{platform,code}``), and the log
itself: the test's topics are read back and must hold nothing.

The happy paths are in test_ingest_webhooks.py. The property tests at the end send
generated bodies and headers, correctly signed and not, to every route.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from schemas import ConversationStarted, decode_event
from services import tenants
from services.briefing import BRIEFING_KEYS
from services.ingest.app import create_app
from services.ingest.signatures import sign_elevenlabs, sign_retell, sign_vapi_hmac
from services.settings import Settings
from streams import BrokerUnavailable, EventLog
from tests.helpers import closed_port
from tests.integration.http_properties import (
    NASTY,
    Ledger,
    appended,
    assert_refused,
    fixture_loop,
    json_values,
    paths_of,
    property_settings,
    run_property,
    value_at,
)
from tests.integration.ingest_fixtures import (
    ROUTES,
    SECRETS,
    TENANT,
    ingest,
    payload,
    signed,
    tenant,
)

__all__ = ["fixture_loop", "ingest", "tenant"]  # fixtures used by name below

#: A realistic body per route that the service accepts with one event.
VALID = {
    "elevenlabs": "elevenlabs_post_call_transcription",
    "elevenlabs-init": "elevenlabs_initiation",
    "vapi": "vapi_end_of_call_report",
    "retell": "retell_call_analyzed",
}
PLATFORMS = list(ROUTES)
REJECTED = "memstream_ingest_rejected_total"
SIGNATURE_FAILURES = "memstream_ingest_signature_failures_total"
SIGNATURE_CODES = {
    "missing_signature",
    "malformed_signature",
    "bad_signature",
    "stale_timestamp",
    "future_timestamp",
    "missing_credentials",
}
WRONG_SECRET = "wsec_not_the_configured_one_42"


# --- helpers ---------------------------------------------------------------------


def url(platform: str, tenant: str = TENANT) -> str:
    return ROUTES[platform].format(tenant=tenant)


def valid_body(platform: str) -> bytes:
    return orjson.dumps(payload(VALID[platform]))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def metric_sum(name: str, **labels: str) -> float:
    """The sum of a counter over every label set that matches ``labels``."""
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def rejected(platform: str, code: str) -> float:
    return metric(REJECTED, route=ROUTES[platform], code=code)


def signature_failures(platform: str, code: str) -> float:
    return metric(SIGNATURE_FAILURES, platform=platform, code=code)


@pytest.fixture
async def small_ingest(topics: Settings, db: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The ingest app with a 1024-byte body limit."""
    app = create_app(topics.replace(max_body_bytes=1024))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


@pytest.fixture
async def unlocked_ingest(topics: Settings, db: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The ingest app with the failed-authentication lockout out of reach: a property
    test forges hundreds of requests from one client (the lockout has its own tests,
    tests/integration/test_ingest_limits.py)."""
    app = create_app(topics.replace(auth_failure_limit=1_000_000))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


# --- credentials -----------------------------------------------------------------

Build = Callable[[bytes], tuple[bytes, dict[str, str]]]
JSON = {"Content-Type": "application/json"}


def _now() -> int:
    return int(time.time())


def _fake_hex() -> str:
    return "ab" * 32


def _tampered(body: bytes) -> bytes:
    """The same body with one value changed (the conversation's status, id or caller)."""
    for old, new in ((b'"done"', b'"gone"'), (b"+14155550123", b"+14155550999")):
        if old in body:
            return body.replace(old, new, 1)
    raise AssertionError("nothing to tamper with")


def _respaced(body: bytes) -> bytes:
    """The same JSON document, serialised differently: not the bytes that were signed."""
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)


def el(t: int, secret: str = SECRETS["elevenlabs"]) -> Build:
    return lambda body: (body, {**JSON, "ElevenLabs-Signature": sign_elevenlabs(secret, body, t)})


def el_other_t() -> Build:
    """Signed at t, sent claiming t - 10: the timestamp is part of what is signed."""
    t = _now()

    def build(body: bytes) -> tuple[bytes, dict[str, str]]:
        header = sign_elevenlabs(SECRETS["elevenlabs"], body, t).replace(f"t={t},", f"t={t - 10},")
        return body, {**JSON, "ElevenLabs-Signature": header}

    return build


def el_header(value: str) -> Build:
    return lambda body: (body, {**JSON, "ElevenLabs-Signature": value})


def retell(t_ms: int, key: str = SECRETS["retell"]) -> Build:
    return lambda body: (body, {**JSON, "x-retell-signature": sign_retell(key, body, t_ms)})


def retell_header(value: str) -> Build:
    return lambda body: (body, {**JSON, "x-retell-signature": value})


def vapi_hmac(timestamp: int, secret: str = SECRETS["vapi"]) -> Build:
    return lambda body: (body, {**JSON, **sign_vapi_hmac(secret, body, timestamp)})


def headers_only(headers: dict[str, str]) -> Build:
    return lambda body: (body, {**JSON, **headers})


def tamper_after(build: Build, change: Callable[[bytes], bytes] = _tampered) -> Build:
    """Sign the body, then send a modified one with the original signature."""

    def tampered(body: bytes) -> tuple[bytes, dict[str, str]]:
        _, headers = build(body)
        return change(body), headers

    return tampered


@dataclass(frozen=True)
class Forgery:
    platform: str
    name: str
    code: str
    build: Callable[[], Build]  # called at test time, so timestamps are "now"


FORGERIES = [
    # ElevenLabs post-call: ElevenLabs-Signature: t=<unix s>,v0=<hmac>, 30 minutes' tolerance.
    Forgery("elevenlabs", "no-signature-header", "missing_signature", lambda: headers_only({})),
    Forgery("elevenlabs", "empty-signature-header", "missing_signature", lambda: el_header(" ")),
    Forgery("elevenlabs", "no-t", "malformed_signature", lambda: el_header(f"v0={_fake_hex()}")),
    Forgery(
        "elevenlabs",
        "t-not-a-number",
        "malformed_signature",
        lambda: el_header(f"t=yesterday,v0={_fake_hex()}"),
    ),
    Forgery(
        "elevenlabs", "v0-not-hex", "malformed_signature", lambda: el_header(f"t={_now()},v0=zz")
    ),
    Forgery("elevenlabs", "not-key-value", "malformed_signature", lambda: el_header("sha256")),
    Forgery("elevenlabs", "no-v0", "malformed_signature", lambda: el_header(f"t={_now()}")),
    Forgery("elevenlabs", "wrong-secret", "bad_signature", lambda: el(_now(), WRONG_SECRET)),
    Forgery(
        "elevenlabs",
        "another-platforms-secret",
        "bad_signature",
        lambda: el(_now(), SECRETS["elevenlabs-init"]),
    ),
    Forgery(
        "elevenlabs",
        "body-changed-after-signing",
        "bad_signature",
        lambda: tamper_after(el(_now())),
    ),
    Forgery(
        "elevenlabs",
        "body-reserialised-after-signing",
        "bad_signature",
        lambda: tamper_after(el(_now()), _respaced),
    ),
    Forgery("elevenlabs", "t-changed-after-signing", "bad_signature", el_other_t),
    Forgery("elevenlabs", "stale-31-min", "stale_timestamp", lambda: el(_now() - 31 * 60)),
    Forgery("elevenlabs", "future-2-min", "future_timestamp", lambda: el(_now() + 120)),
    # ElevenLabs conversation initiation: Authorization: Bearer <token>.
    Forgery("elevenlabs-init", "no-authorization", "missing_credentials", lambda: headers_only({})),
    Forgery(
        "elevenlabs-init",
        "empty-authorization",
        "missing_credentials",
        lambda: headers_only({"Authorization": ""}),
    ),
    Forgery(
        "elevenlabs-init",
        "token-scheme",
        "malformed_signature",
        lambda: headers_only({"Authorization": f"Token {SECRETS['elevenlabs-init']}"}),
    ),
    Forgery(
        "elevenlabs-init",
        "bearer-without-token",
        "malformed_signature",
        lambda: headers_only({"Authorization": "Bearer"}),
    ),
    Forgery(
        "elevenlabs-init",
        "wrong-token",
        "bad_signature",
        lambda: headers_only({"Authorization": f"Bearer {WRONG_SECRET}"}),
    ),
    Forgery(
        "elevenlabs-init",
        "post-call-hmac-secret-as-token",
        "bad_signature",
        lambda: headers_only({"Authorization": f"Bearer {SECRETS['elevenlabs']}"}),
    ),
    Forgery(
        "elevenlabs-init",
        "token-in-another-header",
        "missing_credentials",
        lambda: headers_only({"X-Vapi-Secret": SECRETS["elevenlabs-init"]}),
    ),
    # Vapi: X-Vapi-Secret, Authorization: Bearer, or the HMAC plan (5 minutes' tolerance).
    Forgery("vapi", "no-credentials", "missing_credentials", lambda: headers_only({})),
    Forgery(
        "vapi",
        "wrong-x-vapi-secret",
        "bad_signature",
        lambda: headers_only({"X-Vapi-Secret": WRONG_SECRET}),
    ),
    Forgery(
        "vapi", "empty-x-vapi-secret", "bad_signature", lambda: headers_only({"X-Vapi-Secret": ""})
    ),
    Forgery(
        "vapi",
        "retell-key-as-x-vapi-secret",
        "bad_signature",
        lambda: headers_only({"X-Vapi-Secret": SECRETS["retell"]}),
    ),
    Forgery(
        "vapi",
        "wrong-bearer",
        "bad_signature",
        lambda: headers_only({"Authorization": f"Bearer {WRONG_SECRET}"}),
    ),
    Forgery(
        "vapi",
        "basic-authorization",
        "malformed_signature",
        lambda: headers_only({"Authorization": "Basic dmFwaTpzZWNyZXQ="}),
    ),
    Forgery(
        "vapi",
        "wrong-secret-and-wrong-bearer",
        "bad_signature",
        lambda: headers_only(
            {"X-Vapi-Secret": WRONG_SECRET, "Authorization": f"Bearer {WRONG_SECRET}"}
        ),
    ),
    Forgery("vapi", "hmac-wrong-secret", "bad_signature", lambda: vapi_hmac(_now(), WRONG_SECRET)),
    Forgery(
        "vapi",
        "hmac-body-changed-after-signing",
        "bad_signature",
        lambda: tamper_after(vapi_hmac(_now())),
    ),
    Forgery(
        "vapi",
        "hmac-not-hex",
        "malformed_signature",
        lambda: headers_only({"x-signature": "sha256=abc", "x-timestamp": str(_now())}),
    ),
    Forgery(
        "vapi",
        "hmac-without-timestamp",
        "malformed_signature",
        lambda: headers_only({"x-signature": _fake_hex()}),
    ),
    Forgery("vapi", "hmac-stale-6-min", "stale_timestamp", lambda: vapi_hmac(_now() - 6 * 60)),
    Forgery(
        "vapi",
        "hmac-stale-6-min-in-ms",
        "stale_timestamp",
        lambda: vapi_hmac((_now() - 6 * 60) * 1000),
    ),
    Forgery("vapi", "hmac-future-2-min", "future_timestamp", lambda: vapi_hmac(_now() + 120)),
    # Retell: x-retell-signature: v=<unix ms>,d=<hmac keyed with the API key>, 5 minutes.
    Forgery("retell", "no-signature-header", "missing_signature", lambda: headers_only({})),
    Forgery(
        "retell",
        "no-v",
        "malformed_signature",
        lambda: retell_header(f"d={_fake_hex()}"),
    ),
    Forgery(
        "retell",
        "v-not-a-number",
        "malformed_signature",
        lambda: retell_header(f"v=now,d={_fake_hex()}"),
    ),
    Forgery(
        "retell",
        "d-not-hex",
        "malformed_signature",
        lambda: retell_header(f"v={_now() * 1000},d=nothex"),
    ),
    Forgery(
        "retell", "wrong-api-key", "bad_signature", lambda: retell(_now() * 1000, WRONG_SECRET)
    ),
    Forgery(
        "retell",
        "vapi-secret-as-api-key",
        "bad_signature",
        lambda: retell(_now() * 1000, SECRETS["vapi"]),
    ),
    Forgery(
        "retell",
        "body-changed-after-signing",
        "bad_signature",
        lambda: tamper_after(retell(_now() * 1000)),
    ),
    Forgery(
        "retell",
        "body-reserialised-after-signing",
        "bad_signature",
        lambda: tamper_after(retell(_now() * 1000), _respaced),
    ),
    Forgery("retell", "stale-6-min", "stale_timestamp", lambda: retell((_now() - 6 * 60) * 1000)),
    Forgery(
        # Retell's v= is in milliseconds: seconds read as milliseconds are January 1970.
        "retell",
        "timestamp-in-seconds",
        "stale_timestamp",
        lambda: retell(_now()),
    ),
    Forgery("retell", "future-2-min", "future_timestamp", lambda: retell((_now() + 120) * 1000)),
]


@pytest.mark.parametrize("forgery", FORGERIES, ids=lambda f: f"{f.platform}:{f.name}")
async def test_a_webhook_that_fails_authentication_is_refused_and_appends_nothing(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, forgery: Forgery
) -> None:
    body, headers = forgery.build()(valid_body(forgery.platform))
    before = rejected(forgery.platform, forgery.code)
    failures_before = signature_failures(forgery.platform, forgery.code)

    response = await ingest.post(url(forgery.platform), content=body, headers=headers)

    assert_refused(response, 401, forgery.code)
    assert rejected(forgery.platform, forgery.code) == before + 1
    assert signature_failures(forgery.platform, forgery.code) == failures_before + 1
    assert await appended(topics) == []


async def test_a_signature_ten_minutes_old_is_fresh_for_elevenlabs_only(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    """The contrast to the stale cases: ElevenLabs allows 30 minutes, Retell and Vapi 5."""
    body, headers = el(_now() - 10 * 60)(valid_body("elevenlabs"))
    response = await ingest.post(url("elevenlabs"), content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert len(await appended(topics)) == 1

    for platform, build in (
        ("retell", retell((_now() - 10 * 60) * 1000)),
        ("vapi", vapi_hmac(_now() - 10 * 60)),
    ):
        sent, headers = build(valid_body(platform))
        response = await ingest.post(url(platform), content=sent, headers=headers)
        assert_refused(response, 401, "stale_timestamp")
    assert len(await appended(topics)) == 1


# --- secret rotation and revocation ----------------------------------------------


def elevenlabs_call(conversation_id: str) -> bytes:
    document = payload(VALID["elevenlabs"])
    document["data"]["conversation_id"] = conversation_id
    return orjson.dumps(document)


async def test_during_a_rotation_both_secrets_verify_and_a_revoked_one_no_longer_does(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    old, new = SECRETS["elevenlabs"], "wsec_elevenlabs_rotated_9876543"
    await tenants.add_webhook_secret(db, TENANT, "elevenlabs", new)

    accepted: list[str] = []
    for conversation_id, secret in (("conv_rot_old", old), ("conv_rot_new", new)):
        body = elevenlabs_call(conversation_id)
        response = await ingest.post(
            url("elevenlabs"), content=body, headers=signed("elevenlabs", body, secret=secret)
        )
        assert response.status_code == 200, response.text
        accepted += [e["id"] for e in response.json()["events"]]
    # ElevenLabs signing with both during the switch: one header, two v0= parts.
    body, t = elevenlabs_call("conv_rot_both"), _now()
    both = f"{sign_elevenlabs(old, body, t)},v0={sign_elevenlabs(new, body, t).split('v0=')[1]}"
    response = await ingest.post(
        url("elevenlabs"), content=body, headers={**JSON, "ElevenLabs-Signature": both}
    )
    assert response.status_code == 200, response.text
    accepted += [e["id"] for e in response.json()["events"]]

    [old_row] = [
        s
        for s in await tenants.list_webhook_secrets(db, TENANT)
        if s.platform == "elevenlabs" and s.secret == old
    ]
    assert await tenants.revoke_webhook_secret(db, old_row.secret_id)

    # The running app caches secrets for 5 s: a fresh app reads them after the revocation.
    app = create_app(topics)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fresh") as fresh:
            before = signature_failures("elevenlabs", "bad_signature")
            body = elevenlabs_call("conv_rot_revoked")
            response = await fresh.post(
                url("elevenlabs"), content=body, headers=signed("elevenlabs", body, secret=old)
            )
            assert_refused(response, 401, "bad_signature")
            assert signature_failures("elevenlabs", "bad_signature") == before + 1

            body = elevenlabs_call("conv_rot_after")
            response = await fresh.post(
                url("elevenlabs"), content=body, headers=signed("elevenlabs", body, secret=new)
            )
            assert response.status_code == 200, response.text
            accepted += [e["id"] for e in response.json()["events"]]

    in_log = [str(decode_event(r.value).id) for r in await appended(topics)]
    assert sorted(in_log) == sorted(accepted) and len(in_log) == 4


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_tenant_without_a_secret_for_the_platform_is_refused(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, platform: str
) -> None:
    await tenants.create_tenant(db, "harbor", "Harbor Clinic", default_region="US")
    for other, secret in SECRETS.items():
        if other != platform:
            await tenants.add_webhook_secret(db, "harbor", other, secret)
    before = signature_failures(platform, "no_secret_configured")
    rejected_before = rejected(platform, "no_secret_configured")

    body = valid_body(platform)
    response = await ingest.post(
        url(platform, "harbor"), content=body, headers=signed(platform, body)
    )

    error = assert_refused(response, 401, "no_secret_configured")
    assert f"--platform {platform}" in error["message"]
    assert signature_failures(platform, "no_secret_configured") == before + 1
    assert rejected(platform, "no_secret_configured") == rejected_before + 1
    assert await appended(topics) == []


async def test_a_tenant_whose_only_secret_was_revoked_has_no_secret_configured(
    topics: Settings, db: Any, ingest: httpx.AsyncClient
) -> None:
    await tenants.create_tenant(db, "lapsed", "Lapsed Clinic")
    row = await tenants.add_webhook_secret(db, "lapsed", "retell", SECRETS["retell"])
    assert await tenants.revoke_webhook_secret(db, row.secret_id)
    before = signature_failures("retell", "no_secret_configured")

    body = valid_body("retell")
    response = await ingest.post(
        url("retell", "lapsed"), content=body, headers=signed("retell", body)
    )

    assert_refused(response, 401, "no_secret_configured")
    assert signature_failures("retell", "no_secret_configured") == before + 1
    assert await appended(topics) == []


# --- unknown tenants -------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_an_unknown_tenant_is_404_even_with_a_valid_looking_signature(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, platform: str
) -> None:
    body = valid_body(platform)
    before = rejected(platform, "unknown_tenant")
    failures = metric_sum(SIGNATURE_FAILURES, platform=platform)

    response = await ingest.post(
        url(platform, "nobody"), content=body, headers=signed(platform, body)
    )

    assert_refused(response, 404, "unknown_tenant")
    assert rejected(platform, "unknown_tenant") == before + 1
    assert metric_sum(SIGNATURE_FAILURES, platform=platform) == failures  # not a signature check
    assert await appended(topics) == []


@pytest.mark.parametrize(
    "name",
    ["BAYVIEW", "bayview ", "bay%20view", "caf%C3%A9", "x" * 300, "bay%00view", "%00"],
    ids=["upper-case", "trailing-space", "space", "non-ascii", "300-chars", "nul", "only-nul"],
)
async def test_a_tenant_name_that_cannot_exist_is_404(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, name: str
) -> None:
    """The tenant in the URL is client input: a name no tenant can have is just unknown.

    (Tenant ids are ``[a-z0-9][a-z0-9_-]{0,62}``; the URL is percent-decoded before
    routing, so ``%00`` reaches the service as a NUL character.)
    """
    body = valid_body("elevenlabs")
    response = await ingest.post(
        url("elevenlabs", name), content=body, headers=signed("elevenlabs", body)
    )
    assert_refused(response, 404, "unknown_tenant")
    assert await appended(topics) == []


# --- bodies that are not what the platform sends ---------------------------------

MALFORMED_JSON = [
    b"",
    b"{not json",
    b'{"type": "post_call_transcription",',
    b"\xff\xfe\x00{}",
    b'{"value": NaN}',
    b"[1,]",
    b"1e400",
    b"{}" * 2,
]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_correctly_signed_body_that_is_not_json_is_400(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, platform: str
) -> None:
    before = rejected(platform, "malformed_json")
    bodies = [*MALFORMED_JSON, valid_body(platform)[:-7]]  # a truncated real body too
    for body in bodies:
        response = await ingest.post(url(platform), content=body, headers=signed(platform, body))
        assert_refused(response, 400, "malformed_json")
    assert rejected(platform, "malformed_json") == before + len(bodies)
    assert await appended(topics) == []


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value

    return change


def _delete(path: tuple[str | int, ...]) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]

    return change


def _all(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        for one in changes:
            one(document)

    return change


@dataclass(frozen=True)
class WrongShape:
    platform: str
    name: str
    base: str
    change: Callable[[Any], Any]
    path: str


WRONG_SHAPES = [
    WrongShape(
        "elevenlabs",
        "turn-offset-as-string",
        "elevenlabs_post_call_transcription",
        _set(("data", "transcript", 1, "time_in_call_secs"), "4.2"),
        "data.transcript[1].time_in_call_secs",
    ),
    WrongShape(
        "elevenlabs",
        "unknown-type",
        "elevenlabs_post_call_transcription",
        _set(("type",), "post_call_video"),
        "type",
    ),
    WrongShape(
        "elevenlabs",
        "no-conversation-id",
        "elevenlabs_post_call_transcription",
        _delete(("data", "conversation_id")),
        "data.conversation_id",
    ),
    WrongShape(
        "elevenlabs",
        "no-data",
        "elevenlabs_post_call_audio",
        _delete(("data",)),
        "data",
    ),
    WrongShape(
        "elevenlabs",
        "unknown-role",
        "elevenlabs_post_call_transcription",
        _set(("data", "transcript", 0, "role"), "robot"),
        "data.transcript[0].role",
    ),
    WrongShape(
        "elevenlabs",
        "transcript-not-a-list",
        "elevenlabs_post_call_transcription",
        _set(("data", "transcript"), {"0": "hello"}),
        "data.transcript",
    ),
    WrongShape(
        "elevenlabs",
        "body-is-a-list",
        "elevenlabs_post_call_transcription",
        lambda document: [document],
        "",
    ),
    WrongShape(
        "elevenlabs-init",
        "no-call-sid",
        "elevenlabs_initiation",
        _delete(("call_sid",)),
        "call_sid",
    ),
    WrongShape(
        "elevenlabs-init",
        "caller-id-a-number",
        "elevenlabs_initiation",
        _set(("caller_id",), 14155550123),
        "caller_id",
    ),
    WrongShape(
        "elevenlabs-init",
        "body-is-a-string",
        "elevenlabs_initiation",
        lambda document: "call",
        "",
    ),
    WrongShape(
        "vapi", "no-message", "vapi_end_of_call_report", lambda document: {"call": {}}, "message"
    ),
    WrongShape(
        "vapi",
        "no-message-type",
        "vapi_end_of_call_report",
        _delete(("message", "type")),
        "message.type",
    ),
    WrongShape(
        "vapi",
        "end-of-call-report-without-call-id",
        "vapi_end_of_call_report",
        _delete(("message", "call", "id")),
        "message.call.id",
    ),
    WrongShape(
        "vapi",
        "unknown-transcript-role",
        "vapi_end_of_call_report",
        _set(("message", "artifact", "messages", 1, "role"), "narrator"),
        "message.artifact.messages[1].role",
    ),
    WrongShape(
        "retell",
        "call-ended-without-call",
        "retell_call_analyzed",
        lambda document: {"event": "call_ended"},
        "call",
    ),
    WrongShape("retell", "no-event", "retell_call_analyzed", _delete(("event",)), "event"),
    WrongShape(
        "retell",
        "call-id-a-number",
        "retell_call_analyzed",
        _set(("call", "call_id"), 12),
        "call.call_id",
    ),
    WrongShape(
        "retell",
        "ended-before-it-started",
        "retell_call_analyzed",
        _set(("call", "end_timestamp"), 1760462400000),
        "call.end_timestamp",
    ),
]


def shaped(case: WrongShape) -> bytes:
    document = payload(case.base)
    result = case.change(document)
    return orjson.dumps(document if result is None else result)


@pytest.mark.parametrize("case", WRONG_SHAPES, ids=lambda c: f"{c.platform}:{c.name}")
async def test_valid_json_of_the_wrong_shape_is_422_with_the_field_path(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, case: WrongShape
) -> None:
    body = shaped(case)
    before = rejected(case.platform, "invalid_payload")

    response = await ingest.post(
        url(case.platform), content=body, headers=signed(case.platform, body)
    )

    assert_refused(response, 422, "invalid_payload", path=case.path)
    assert rejected(case.platform, "invalid_payload") == before + 1
    assert await appended(topics) == []


OUT_OF_RANGE = [
    WrongShape(
        "elevenlabs",
        "call-duration-1e15-s",
        "elevenlabs_post_call_transcription",
        _set(("data", "metadata", "call_duration_secs"), 1e15),
        "data.metadata.call_duration_secs",
    ),
    WrongShape(
        "elevenlabs",
        "turn-offset-1e308-s",
        "elevenlabs_post_call_transcription",
        _set(("data", "transcript", 0, "time_in_call_secs"), 1e308),
        "data.transcript[0].time_in_call_secs",
    ),
    WrongShape(
        # Finite, but its milliseconds are an integer past 64 bits: the event cannot be
        # written to the log (orjson refuses the integer when the event is encoded).
        "elevenlabs",
        "turn-offset-1e300-s",
        "elevenlabs_post_call_transcription",
        _set(("data", "transcript", 2, "time_in_call_secs"), 1e300),
        "data.transcript[2].time_in_call_secs",
    ),
    WrongShape(
        "vapi",
        "message-offset-1e308-s",
        "vapi_end_of_call_report",
        _set(("message", "artifact", "messages", 1, "secondsFromStart"), 1e308),
        "message.artifact.messages[1].secondsFromStart",
    ),
    WrongShape(
        "retell",
        "word-start-1e308-s",
        "retell_call_analyzed",
        _set(("call", "transcript_object", 1, "words", 0, "start"), 1e308),
        "call.transcript_object[1].words[0].start",
    ),
    WrongShape(
        "retell",
        "duration-1e300-ms-without-start",
        "retell_call_analyzed",
        _all(_delete(("call", "start_timestamp")), _set(("call", "duration_ms"), 1e300)),
        "call.duration_ms",
    ),
]


@pytest.mark.parametrize("case", OUT_OF_RANGE, ids=lambda c: f"{c.platform}:{c.name}")
async def test_a_number_too_large_for_its_field_is_422_not_a_server_error(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, case: WrongShape
) -> None:
    """A finite JSON number that is no possible duration or offset is a wrong shape too.

    The adapters refuse an unrepresentable timestamp with a PayloadError ("is not a
    representable point in time"); a duration or offset out of range must be refused the
    same way, naming the field, rather than escape as an exception (a 500, which the
    platform would retry forever). An exception raised by the app propagates out of the
    in-process transport and fails this test with the service's traceback.
    """
    body = shaped(case)
    response = await ingest.post(
        url(case.platform), content=body, headers=signed(case.platform, body)
    )
    assert_refused(response, 422, "invalid_payload", path=case.path)
    assert await appended(topics) == []


# --- body size -------------------------------------------------------------------


def big_body(platform: str) -> bytes:
    document = payload(VALID[platform])
    document["padding"] = "x" * 2048  # unknown fields are ignored: only the size matters
    return orjson.dumps(document)


async def chunks(body: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_body_over_the_limit_is_413_with_a_content_length(
    topics: Settings, small_ingest: httpx.AsyncClient, tenant: str, platform: str
) -> None:
    body = big_body(platform)
    before = rejected(platform, "body_too_large")

    response = await small_ingest.post(url(platform), content=body, headers=signed(platform, body))

    assert int(response.request.headers["content-length"]) == len(body) > 1024
    assert_refused(response, 413, "body_too_large")
    assert rejected(platform, "body_too_large") == before + 1
    assert await appended(topics) == []


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_streamed_body_over_the_limit_is_413_without_a_content_length(
    topics: Settings, small_ingest: httpx.AsyncClient, tenant: str, platform: str
) -> None:
    body = big_body(platform)
    before = rejected(platform, "body_too_large")

    response = await small_ingest.post(
        url(platform), content=chunks(body), headers=signed(platform, body)
    )

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_refused(response, 413, "body_too_large")
    assert rejected(platform, "body_too_large") == before + 1
    assert await appended(topics) == []


async def test_the_limit_is_inclusive_for_sized_and_streamed_bodies(
    topics: Settings, small_ingest: httpx.AsyncClient, tenant: str
) -> None:
    def initiation(size: int) -> bytes:
        document = payload("elevenlabs_initiation")
        document["padding"] = ""
        filler = size - len(orjson.dumps(document))
        document["padding"] = "x" * filler
        body = orjson.dumps(document)
        assert len(body) == size
        return body

    at_limit, over = initiation(1024), initiation(1025)
    for content in (lambda b: b, chunks):
        response = await small_ingest.post(
            url("elevenlabs-init"),
            content=content(at_limit),
            headers=signed("elevenlabs-init", b""),
        )
        assert response.status_code == 200, response.text
        response = await small_ingest.post(
            url("elevenlabs-init"), content=content(over), headers=signed("elevenlabs-init", b"")
        )
        assert_refused(response, 413, "body_too_large")
    # Both accepted deliveries are the same call: appended once (in-process dedupe).
    [record] = await appended(topics)
    assert isinstance(decode_event(record.value), ConversationStarted)


# --- the order of the checks -----------------------------------------------------


async def test_the_checks_run_in_the_documented_order(
    topics: Settings, small_ingest: httpx.AsyncClient, tenant: str
) -> None:
    """Size, then tenant, then credentials, then JSON, then shape: each refusal says the first."""
    big_garbage = b"{" * 2000
    # 1. Too large beats an unknown tenant and missing credentials.
    response = await small_ingest.post(url("elevenlabs", "nobody"), content=big_garbage)
    assert_refused(response, 413, "body_too_large")
    # 2. An unknown tenant beats missing credentials and malformed JSON.
    response = await small_ingest.post(url("retell", "nobody"), content=b"{")
    assert_refused(response, 404, "unknown_tenant")
    # 3. Bad credentials beat malformed JSON: unauthenticated bodies are never parsed.
    response = await small_ingest.post(
        url("vapi"), content=b"{", headers={"X-Vapi-Secret": WRONG_SECRET}
    )
    assert_refused(response, 401, "bad_signature")
    # 4. Malformed JSON is reported before any shape (it has none).
    response = await small_ingest.post(url("vapi"), content=b"{", headers=signed("vapi", b"{"))
    assert_refused(response, 400, "malformed_json")
    assert await appended(topics) == []


# --- the log is unavailable ------------------------------------------------------


async def test_the_ingest_app_does_not_start_without_its_broker(topics: Settings, db: Any) -> None:
    """Why the 503 tests below stop a running app's producer instead.

    An app configured with an unreachable broker cannot get past its lifespan: the
    producer's start raises BrokerUnavailable, so no request could ever reach it.
    """
    app = create_app(topics.replace(kafka_bootstrap=f"127.0.0.1:{closed_port()}"))
    with pytest.raises(BrokerUnavailable):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.parametrize("platform", [p for p in PLATFORMS if p != "elevenlabs-init"])
async def test_a_webhook_is_503_and_appends_nothing_when_the_log_is_unavailable(
    topics: Settings, db: Any, tenant: str, platform: str
) -> None:
    """The broker goes away under a running app: 503 log_unavailable, nothing appended.

    The app cannot be started against an unreachable broker (test above), and the test
    broker is shared by the whole session, so it cannot be stopped for one test. What
    the app sees when its broker goes away is ``EventLog`` raising BrokerUnavailable
    from ``append_many``; stopping the app's own ``EventLog`` (``app.state.service.log``)
    makes it raise exactly that ("the event log is not started") through the real
    producer code, with nothing mocked. The webhook is then redelivered, as the platform
    would after a 503, through a new ``EventLog``: it must be appended then, i.e. the
    refused delivery was not remembered as appended by the dedupe cache.
    """
    app = create_app(topics)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            service = app.state.service
            await service.log.stop()
            before = rejected(platform, "log_unavailable")
            body = valid_body(platform)

            response = await client.post(
                url(platform), content=body, headers=signed(platform, body)
            )

            assert_refused(response, 503, "log_unavailable")
            assert rejected(platform, "log_unavailable") == before + 1
            assert await appended(topics) == []

            service.log = EventLog(topics)
            await service.log.start()
            response = await client.post(
                url(platform), content=body, headers=signed(platform, body)
            )
            assert response.status_code == 200, response.text
            assert response.json()["duplicates"] == 0
    assert len(await appended(topics)) == 1


async def test_a_call_start_webhook_is_answered_while_the_log_is_unavailable(
    topics: Settings, db: Any, tenant: str
) -> None:
    """The phone is ringing: the briefing is answered though nothing could be appended
    (the log is made unavailable as in the test above). The answer holds no position;
    the failure is counted, and a redelivery is appended (it was not remembered)."""
    app = create_app(topics)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            service = app.state.service
            await service.log.stop()
            failures = "memstream_ingest_initiation_append_failures_total"
            labels = {"platform": "elevenlabs", "code": "log_unavailable"}
            before = metric(failures, **labels)
            body = valid_body("elevenlabs-init")

            response = await client.post(
                url("elevenlabs-init"), content=body, headers=signed("elevenlabs-init", body)
            )

            assert response.status_code == 200, response.text
            assert response.json()["type"] == "conversation_initiation_client_data"
            assert set(response.json()["dynamic_variables"]) == set(BRIEFING_KEYS)
            assert metric(failures, **labels) == before + 1
            assert await appended(topics) == []

            service.log = EventLog(topics)
            await service.log.start()
            response = await client.post(
                url("elevenlabs-init"), content=body, headers=signed("elevenlabs-init", body)
            )
            assert response.status_code == 200, response.text
    assert len(await appended(topics)) == 1


async def test_a_webhook_with_nothing_to_append_is_acknowledged_while_the_log_is_down(
    topics: Settings, db: Any, tenant: str
) -> None:
    app = create_app(topics)
    async with app.router.lifespan_context(app):
        await app.state.service.log.stop()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            document = payload("vapi_status_update")  # made a partial transcript: dropped
            document["message"].update(type="transcript", role="user", transcriptType="partial")
            document["message"]["transcript"] = "I'd like to"
            body = orjson.dumps(document)
            response = await client.post(url("vapi"), content=body, headers=signed("vapi", body))
    assert response.status_code == 200, response.text
    assert response.json()["events"] == []
    assert await appended(topics) == []


# --- properties ------------------------------------------------------------------
#
# How the routes are driven: tests/integration/http_properties.py.

EXAMPLES = 250
PROPERTY_SETTINGS = property_settings(EXAMPLES)

#: The realistic bodies each route's mutations start from, and where their call id is.
BASES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "elevenlabs": [
        ("elevenlabs_post_call_transcription", ("data", "conversation_id")),
        ("elevenlabs_post_call_audio", ("data", "conversation_id")),
        ("elevenlabs_call_initiation_failure", ("data", "conversation_id")),
    ],
    "elevenlabs-init": [("elevenlabs_initiation", ("call_sid",))],
    "vapi": [
        ("vapi_end_of_call_report", ("message", "call", "id")),
        ("vapi_status_update", ("message", "call", "id")),
        ("vapi_assistant_request", ("message", "call", "id")),
    ],
    "retell": [("retell_call_analyzed", ("call", "call_id"))],
}
PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")

# Copied: a drawn list or object is inserted into a document that later mutations change.
replacements = (st.sampled_from(NASTY) | json_values).map(copy.deepcopy)
numbers = st.sampled_from([v for v in NASTY if isinstance(v, int | float)]) | st.floats(
    allow_nan=False, allow_infinity=False
)


@dataclass(frozen=True)
class Mutated:
    """A realistic body, mutated; its call id is made unique when it is sent."""

    document: Any
    id_path: tuple[str, ...]

    def encode(self) -> bytes:
        """The body, with a call id no other example uses (if it still has a plain one).

        Otherwise an example could be a redelivery of an earlier one, answered from the
        in-process dedupe without being encoded: a failure would not reproduce when
        hypothesis replays the example. Blank, non-string or control-character ids
        are left as they are: they are part of what is being tested.
        """
        document = copy.deepcopy(self.document)
        try:
            parent = value_at(document, self.id_path[:-1])
            value = parent[self.id_path[-1]]
        except (KeyError, IndexError, TypeError):
            return orjson.dumps(document)
        if isinstance(value, str) and PLAIN_ID.fullmatch(value):
            parent[self.id_path[-1]] = f"{value}-{uuid.uuid4().hex[:12]}"
        return orjson.dumps(document)


@st.composite
def mutated(draw: st.DrawFn, platform: str) -> Mutated:
    """A realistic body of the route with 0-3 fields deleted or replaced by other JSON.

    Half the changes replace a number by another number (edges of every range
    included): numbers become durations, offsets and timestamps deep in the adapters.
    """
    name, id_path = draw(st.sampled_from(BASES[platform]))
    document: Any = payload(name)
    if name == "retell_call_analyzed":
        document["event"] = draw(st.sampled_from(["call_analyzed", "call_ended", "call_started"]))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        change = draw(st.sampled_from(["delete", "replace", "renumber", "renumber"]))
        paths = paths_of(document)
        if change == "renumber":
            paths = [
                p
                for p in paths
                if isinstance(value_at(document, p), int | float)
                and not isinstance(value_at(document, p), bool)
            ]
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent = value_at(document, path[:-1])
        if change == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(numbers if change == "renumber" else replacements)
    return Mutated(document, id_path)


def bodies(platform: str) -> st.SearchStrategy[bytes | Mutated]:
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(orjson.dumps),
        mutated(platform),
        mutated(platform),  # twice: half the bodies are realistic ones, mutated
    )


header_values = st.text(st.characters(max_codepoint=255), max_size=60).map(
    lambda text: text.encode("latin-1")
)
#: Arbitrary extra headers; the names stay clear of the credential and framing headers.
extra_headers = st.dictionaries(
    st.from_regex(r"x-fuzz-[a-z0-9-]{1,12}", fullmatch=True), header_values, max_size=4
)


def post(
    loop: asyncio.AbstractEventLoop,
    client: httpx.AsyncClient,
    platform: str,
    body: bytes,
    headers: dict[str, Any],
) -> httpx.Response:
    return loop.run_until_complete(client.post(url(platform), content=body, headers=headers))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_signed_generated_bodies_never_fail_the_server_and_only_200s_append(
    topics: Settings,
    ingest: httpx.AsyncClient,
    tenant: str,
    fixture_loop: asyncio.AbstractEventLoop,
    platform: str,
) -> None:
    """Correctly signed arbitrary bytes, JSON and mutated real bodies: parsing is exercised.

    Never a 5xx; every refusal is a 4xx in the error shape; the log holds exactly the
    records the 200 answers reported (their positions and ids), and nothing else.
    """
    ledger = Ledger(platform)
    rejected_before = metric_sum(REJECTED, route=ROUTES[platform])

    def example(body: bytes | Mutated, extra: dict[str, bytes]) -> None:
        sent = body.encode() if isinstance(body, Mutated) else body
        response = post(fixture_loop, ingest, platform, sent, {**extra, **signed(platform, sent)})
        ledger.record(sent, response)

    run_property(example, platform, PROPERTY_SETTINGS, body=bodies(platform), extra=extra_headers)

    fixture_loop.run_until_complete(ledger.check_log(topics))
    refusals = sum(n for status, n in ledger.statuses.items() if status != 200)
    assert metric_sum(REJECTED, route=ROUTES[platform]) == rejected_before + refusals


CREDENTIAL_HEADERS = [
    "ElevenLabs-Signature",
    "x-retell-signature",
    "X-Vapi-Secret",
    "Authorization",
    "x-signature",
    "x-timestamp",
]
# Printable ASCII: some schemes send the secret itself in a header.
wrong_secrets = st.sampled_from([WRONG_SECRET, *SECRETS.values()]) | st.from_regex(
    r"[ -~]{1,40}", fullmatch=True
)
hex_digests = st.text("0123456789abcdef", min_size=64, max_size=64)
near_now = st.integers(min_value=-4000, max_value=4000).map(lambda delta: _now() + delta)


@st.composite
def bad_credentials(draw: st.DrawFn, platform: str, body: bytes) -> dict[str, Any]:
    """Headers that do not authenticate ``body`` for ``platform``: absent, garbage or forged."""
    secret = SECRETS[platform]
    kind = draw(
        st.sampled_from(["none", "garbage", "shaped", "wrong-secret", "other-body", "stale"])
    )
    if kind == "garbage":
        return draw(st.dictionaries(st.sampled_from(CREDENTIAL_HEADERS), header_values))
    if kind == "shaped":
        t = draw(near_now)
        return {
            "ElevenLabs-Signature": f"t={t},v0={draw(hex_digests)}",
            "x-retell-signature": f"v={t * 1000},d={draw(hex_digests)}",
            "x-signature": draw(hex_digests),
            "x-timestamp": str(t),
            "Authorization": f"Bearer {draw(st.from_regex(r'[!-~]{1,40}', fullmatch=True))}",
        }
    if kind == "wrong-secret":
        key = draw(wrong_secrets.filter(lambda s: s != secret))
        return signed(platform, body, secret=key)
    if kind == "other-body" and platform in ("elevenlabs", "retell", "vapi"):
        other = draw(st.binary(max_size=50).filter(lambda b: b != body))
        if platform == "vapi":
            return sign_vapi_hmac(secret, other, _now())
        return signed(platform, other)
    if kind == "stale" and platform in ("elevenlabs", "retell", "vapi"):
        # Signed with the right secret, but older than the tolerance or ahead of the skew.
        tolerance = 1800 if platform == "elevenlabs" else 300
        t = _now() + draw(
            st.integers(min_value=-(10**7), max_value=-(tolerance + 5))
            | st.integers(min_value=65, max_value=10**7)
        )
        if platform == "elevenlabs":
            return {"ElevenLabs-Signature": sign_elevenlabs(secret, body, t)}
        if platform == "retell":
            return {"x-retell-signature": sign_retell(secret, body, t * 1000)}
        return sign_vapi_hmac(secret, body, t)
    return {}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_unsigned_or_wrongly_signed_generated_requests_are_always_401(
    topics: Settings,
    unlocked_ingest: httpx.AsyncClient,
    tenant: str,
    fixture_loop: asyncio.AbstractEventLoop,
    platform: str,
) -> None:
    """Generated bodies with absent, garbage or forged credentials: never accepted.

    Forged means signed with another secret, signed over other bytes, or signed
    correctly but outside the freshness window. The answer is always a 401 with a
    signature code (never a 2xx, never a 5xx), and nothing reaches the log.
    """
    rejected_before = metric_sum(REJECTED, route=ROUTES[platform])
    statuses: Counter[int] = Counter()

    def example(body: bytes | Mutated, extra: dict[str, bytes], data: st.DataObject) -> None:
        body = body.encode() if isinstance(body, Mutated) else body
        credentials = data.draw(bad_credentials(platform, body), label="credentials")
        response = post(fixture_loop, unlocked_ingest, platform, body, {**extra, **credentials})
        statuses[response.status_code] += 1
        error = assert_refused(response, 401, response.json()["error"]["code"])
        assert error["code"] in SIGNATURE_CODES, error

    run_property(
        example,
        platform,
        PROPERTY_SETTINGS,
        body=bodies(platform),
        extra=extra_headers,
        data=st.data(),
    )

    assert set(statuses) == {401}
    assert fixture_loop.run_until_complete(appended(topics)) == []
    assert metric_sum(REJECTED, route=ROUTES[platform]) == rejected_before + statuses.total()
