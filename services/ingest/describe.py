"""What FastAPI cannot see of the ingest routes, added to their OpenAPI document.

The routes read their bodies raw: credentials are checked over the exact bytes before
anything is parsed, so FastAPI cannot see what a route takes. :func:`describe` adds it
to the generated document: the JSON bodies (free-form objects: each platform's own
webhook shape, normalised by services/ingest/platforms), the credentials of each route
as security schemes, and the refusals every route answers in memstream's error shape.
``create_app`` installs it (:func:`install`), so ``/openapi.json`` serves this document;
services/ingest/openapi.py writes it to docs/openapi/ingest.json.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.tenants import TENANT_PATTERN

__all__ = ["OPERATIONS", "SCHEMAS", "SECURITY_SCHEMES", "describe", "install"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_ACCEPTED = {"$ref": "#/components/schemas/Accepted"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "e.g. bad_signature"},
                    "message": {"type": "string"},
                    "path": {
                        "type": "string",
                        "description": "the body field at fault, e.g. data.transcript[1].role",
                    },
                },
            }
        },
        "description": "Every refusal; nothing was appended.",
    },
    "Accepted": {
        "type": "object",
        "required": ["status", "events", "duplicates"],
        "properties": {
            "kind": {"type": "string", "description": "webhooks: e.g. vapi.end-of-call-report"},
            "status": {"const": "accepted"},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "type", "position"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "type": {"type": "string"},
                        "position": {
                            "type": ["string", "null"],
                            "description": "topic:partition:offset (read-your-writes on the "
                            "query service); null for an event this process appended before",
                        },
                    },
                },
            },
            "duplicates": {"type": "integer", "minimum": 0},
        },
        "description": "The events appended, acknowledged by the broker (acks=all).",
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {"type": "http", "scheme": "bearer", "description": "a tenant API key (msk_...)"},
    "elevenlabsSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "ElevenLabs-Signature",
        "description": "t=<unix s>,v0=<hex HMAC-SHA256 of '{t}.' + body> (several v0= while a "
        "secret is rotated); 30 minutes' tolerance",
    },
    "elevenlabsInitiationToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the tenant's elevenlabs-init secret",
    },
    "vapiSecret": {"type": "apiKey", "in": "header", "name": "X-Vapi-Secret"},
    "vapiBearer": {"type": "http", "scheme": "bearer", "description": "the tenant's vapi secret"},
    "vapiHmac": {
        "type": "apiKey",
        "in": "header",
        "name": "x-signature",
        "description": "hex HMAC-SHA256 of '{x-timestamp}.' + body, with the x-timestamp "
        "header (unix s or ms); 5 minutes' tolerance",
    },
    "retellSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "x-retell-signature",
        "description": "v=<unix ms>,d=<hex HMAC-SHA256 of body + v, keyed with the Retell API "
        "key>; 5 minutes' tolerance",
    },
}

_WEBHOOK_BODY = {
    "type": "object",
    "description": "The platform's webhook, as it sends it (docs/ingest.md, Routes).",
}
_EVENTS_BODY = {
    "anyOf": [
        {"type": "object", "description": 'one event, or {"events": [event, ...]}'},
        {"type": "array", "items": {"type": "object"}, "minItems": 1},
    ],
    "description": "memstream events (the JSON Schemas in schemas/json); every event's "
    "tenant is the API key's",
}


def _refusals(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "the body is not JSON (malformed_json), or ended early (incomplete_body)",
        401: "no valid credentials (missing_credentials, bad_signature, stale_timestamp, ...)",
        403: "the API key may not append these events (tenant_mismatch, insufficient_scope, "
        "derived_event_type)",
        404: "no such tenant (unknown_tenant)",
        413: "the body is over MEMSTREAM_MAX_BODY_BYTES (body_too_large), or an event "
        "over the log's record size (event_too_large)",
        415: "a compressed body, e.g. Content-Encoding: gzip (unsupported_content_encoding)",
        422: "JSON of the wrong shape (invalid_payload and others, with the field's path)",
        503: "the log did not acknowledge the append (log_unavailable): retry",
    }
    return {
        str(status): {
            "description": reasons[status],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for status in statuses
    }


def _operation(
    body: dict[str, Any], security: list[str], ok: dict[str, Any], *refusals: int
) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "security": [{scheme: []} for scheme in security],
        "responses": {"200": ok, **_refusals(*refusals)},
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_WEBHOOK_REFUSALS = (400, 401, 404, 413, 415, 422, 503)

#: What each POST route takes and answers, beyond what FastAPI sees in its signature.
OPERATIONS: dict[str, dict[str, Any]] = {
    "/v1/events": _operation(
        _EVENTS_BODY, ["apiKey"], _ok("appended", _ACCEPTED), 400, 401, 403, 413, 415, 422, 503
    ),
    "/v1/webhooks/{tenant}/elevenlabs": _operation(
        _WEBHOOK_BODY, ["elevenlabsSignature"], _ok("appended", _ACCEPTED), *_WEBHOOK_REFUSALS
    ),
    "/v1/webhooks/{tenant}/elevenlabs/initiation": _operation(
        _WEBHOOK_BODY,
        ["elevenlabsInitiationToken"],
        _ok(
            "conversation.started appended; the caller's briefing",
            {
                "type": "object",
                "required": ["type", "dynamic_variables"],
                "properties": {
                    "type": {"const": "conversation_initiation_client_data"},
                    "dynamic_variables": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                    },
                    "conversation_config_override": {"type": "object"},
                },
            },
        ),
        *_WEBHOOK_REFUSALS,
    ),
    "/v1/webhooks/{tenant}/vapi": _operation(
        _WEBHOOK_BODY,
        ["vapiSecret", "vapiBearer", "vapiHmac"],
        _ok(
            "appended; for assistant-request, the assistant and the caller's briefing",
            {
                "anyOf": [
                    _ACCEPTED,
                    {
                        "type": "object",
                        "required": ["assistantId", "assistantOverrides"],
                        "properties": {
                            "assistantId": {"type": "string"},
                            "assistantOverrides": {"type": "object"},
                        },
                    },
                ]
            },
        ),
        *_WEBHOOK_REFUSALS,
    ),
    "/v1/webhooks/{tenant}/retell": _operation(
        _WEBHOOK_BODY, ["retellSignature"], _ok("appended", _ACCEPTED), *_WEBHOOK_REFUSALS
    ),
}

_TENANT = {
    "type": "string",
    "pattern": TENANT_PATTERN.pattern,
    "description": "the memstream tenant the platform is configured for; any other name "
    "is 404 unknown_tenant",
}
_VAPI_TIMESTAMP = {
    "name": "x-timestamp",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "with x-signature (Vapi's HMAC plan): unix seconds or milliseconds",
}


def describe(app: FastAPI) -> dict[str, Any]:
    """The ingest app's OpenAPI document (built once, then cached on the app)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method == "post":
                # A route added without its description here fails loudly (KeyError).
                operation.update(OPERATIONS[path])
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "tenant":
                    parameter["schema"] = _TENANT
            if path == "/v1/webhooks/{tenant}/vapi":
                operation["parameters"].append(_VAPI_TIMESTAMP)
    components = schema.setdefault("components", {})
    # FastAPI's own 422 body is replaced by memstream's error shape on every route.
    paths = orjson.dumps(schema["paths"]).decode()
    components["schemas"] = {
        **{
            name: value
            for name, value in components.get("schemas", {}).items()
            if f"#/components/schemas/{name}" in paths
        },
        **SCHEMAS,
    }
    components["securitySchemes"] = SECURITY_SCHEMES
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Serve :func:`describe`'s document at ``/openapi.json`` (and ``/docs``)."""
    app.openapi = lambda: describe(app)  # type: ignore[method-assign]
