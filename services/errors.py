"""The services' client errors: one HTTP status, one machine-readable code, one message."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

__all__ = ["ApiError", "refuse_framework_errors"]


class ApiError(Exception):
    """A request is refused. The body is ``{"error": {"code", "message", "path"?, ...}}``
    (``details`` adds machine-readable fields, e.g. the positions a 409 reached)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.headers = headers or {}
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.path is not None:
            error["path"] = self.path
        return {"error": {**error, **self.details}}


def refuse_framework_errors(app: FastAPI, error: type[ApiError]) -> None:
    """Answer the framework's own refusals as ``error`` refusals, through the handler the
    app registered for ``error`` (same body, same counter): a path no route has (404
    ``not_found``), a method the route does not take (405 ``method_not_allowed``, with
    ``Allow``), a parameter FastAPI validates from the signature (422
    ``invalid_request`` naming it). Without this they answer ``{"detail": ...}``."""
    handler = app.exception_handlers[error]

    async def refuse(request: Request, refusal: ApiError) -> Response:
        response = handler(request, refusal)
        return response if isinstance(response, Response) else await response

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return await refuse(
            request, error(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
        )

    async def invalid_parameter(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        # ("query", "first_message"): the parameter's name, as the request spells it.
        path = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        message = str(first.get("msg", "a parameter is not valid"))
        return await refuse(request, error(422, "invalid_request", message, path=path))

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_parameter)
