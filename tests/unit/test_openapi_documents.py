"""The services' OpenAPI documents: checked in up to date (docs/openapi/), served by the
apps, and saying what the routes that read their bodies raw take."""

from __future__ import annotations

import importlib
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from services.errors import ApiError, refuse_framework_errors
from services.ingest import openapi as ingest_openapi

SERVICES = ["query", "ingest"]


@pytest.mark.parametrize("service", SERVICES)
def test_the_checked_in_openapi_document_is_up_to_date(service: str) -> None:
    openapi = importlib.import_module(f"services.{service}.openapi")
    assert openapi.CHECKED_IN.read_bytes() == openapi.render(), (
        f"docs/openapi/{service}.json is out of date: run `make openapi`"
    )


def test_the_query_document_describes_the_search_body() -> None:
    from services.query import openapi

    search = openapi.document()["paths"]["/v1/memories/search"]["post"]
    assert search["security"] == [{"apiKey": []}]
    body = search["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"user", "query"}


def test_the_ingest_document_describes_bodies_credentials_and_refusals() -> None:
    document = ingest_openapi.document()
    posts = {path: ops["post"] for path, ops in document["paths"].items() if "post" in ops}
    assert set(posts) == {"/v1/events", *(f"/v1/webhooks/{{tenant}}/{r}" for r in ROUTES)}
    for path, operation in posts.items():
        body = operation["requestBody"]
        assert body["required"] is True
        assert "application/json" in body["content"], path
        assert operation["security"], path
        for status, response in operation["responses"].items():
            if status != "200":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
    schemes = document["components"]["securitySchemes"]
    assert {scheme for op in posts.values() for entry in op["security"] for scheme in entry} == (
        set(schemes)
    )
    vapi = posts["/v1/webhooks/{tenant}/vapi"]
    assert [s for entry in vapi["security"] for s in entry] == [
        "vapiSecret",
        "vapiBearer",
        "vapiHmac",
    ]
    assert {p["name"] for p in vapi["parameters"]} == {"tenant", "assistant_id", "x-timestamp"}
    # FastAPI's own validation body is nowhere: every refusal is memstream's.
    assert "HTTPValidationError" not in document["components"]["schemas"]


ROUTES = ["elevenlabs", "elevenlabs/initiation", "vapi", "retell"]


async def test_the_ingest_app_serves_the_checked_in_document() -> None:
    from services.ingest.app import create_app
    from services.settings import Settings

    app = create_app(
        Settings(database_url="postgresql://unused/unused", kafka_bootstrap="unused:1")
    )
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            response = await client.get("/openapi.json")
        assert response.json() == orjson.loads(ingest_openapi.CHECKED_IN.read_bytes())
    finally:
        await app.state.service.stop()


def _app() -> FastAPI:
    app = FastAPI()

    @app.exception_handler(ApiError)
    async def refused(request: Any, exc: ApiError) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.post("/v1/things/{name}")
    async def things(name: str, flag: bool = False) -> dict[str, Any]:
        return {"name": name, "flag": flag}

    refuse_framework_errors(app, ApiError)
    return app


@pytest.mark.parametrize(
    ("method", "url", "status", "code", "path"),
    [
        ("POST", "/v1/nothing", 404, "not_found", None),
        ("POST", "/v1/things/a/b", 404, "not_found", None),
        ("GET", "/v1/things/a", 405, "method_not_allowed", None),
        ("POST", "/v1/things/a?flag=maybe", 422, "invalid_request", "flag"),
    ],
)
async def test_the_frameworks_refusals_answer_in_the_error_shape(
    method: str, url: str, status: int, code: str, path: str | None
) -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.request(method, url)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error.get("path")) == (code, path)
    assert error["message"]
    if status == 405:
        assert response.headers["allow"] == "POST"
