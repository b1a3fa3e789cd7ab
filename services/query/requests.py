"""The query service's request bodies, validated as strictly as the ingest service's:
unknown fields, wrong types and out-of-range values are 422s naming the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.envelope import MAX_ID_CHARS
from services.bodies import read_body
from services.errors import ApiError

__all__ = [
    "ContextRequest",
    "SearchRequest",
    "TranscriptSearchRequest",
    "User",
    "documented_body",
    "first_error",
    "read_json",
    "subject_of",
    "validated",
]

# Query bodies are small; anything larger is not a query.
_MAX_BODY_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)

Sector = Literal["semantic", "episodic", "procedural", "emotional", "reflective"]

#: A user within the key's tenant: the part of the subject after ``tenant/`` (an E.164
#: number such as ``+14155550123`` or the customer's own user id).
User = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=MAX_ID_CHARS,
        pattern=r"^[^\x00-\x1f\x7f]+$",
    ),
]
#: PostgreSQL text cannot hold a NUL character: refused here rather than failing there.
QueryText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=r"^[^\x00]+$"),
]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    user: User
    query: QueryText
    limit: int = Field(default=10, ge=1, le=50)
    sectors: list[Sector] | None = Field(default=None, min_length=1)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    sources: list[Literal["memories", "passages"]] = Field(
        default=["memories", "passages"], min_length=1, max_length=2
    )
    """What to search: extracted memories, passages of what was said, or both (fused)."""


class TranscriptSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    user: User
    query: QueryText
    limit: int = Field(default=5, ge=1, le=20)


class ContextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    user: User
    query: QueryText | None = None
    token_budget: int = Field(ge=32, le=32_000)
    tokenizer: Literal["o200k_base", "cl100k_base"] = "o200k_base"
    stream: bool = False
    """Server-Sent Events, most useful first: briefing, then memories, then the context."""


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The first validation error as (``a.b[0]`` path, message)."""
    error = exc.errors()[0]
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "$", error["msg"]


async def read_json(request: Request) -> Any:
    body = await read_body(request, _MAX_BODY_BYTES)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that validates ``model`` itself (so its errors
    keep memstream's error format rather than FastAPI's)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


def validated(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        path, message = first_error(exc)
        raise ApiError(422, "invalid_request", message, path=path) from None


def subject_of(tenant: str, user: str) -> str:
    """The subject a user name means within the key's tenant (never another tenant's)."""
    return f"{tenant}/{user}"
