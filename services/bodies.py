"""Request bodies as both services read them: as sent, bounded, whole."""

from __future__ import annotations

from fastapi import Request
from starlette.requests import ClientDisconnect

from services.errors import ApiError

__all__ = ["read_body"]


async def read_body(request: Request, limit: int, refusal: type[ApiError] = ApiError) -> bytes:
    """The body's bytes as sent, at most ``limit`` of them; refused with ``refusal``:

    - 415 ``unsupported_content_encoding``: a compressed body (``Content-Encoding: gzip``
      and the like). Bodies are read, and signatures checked, as sent: it would only fail
      later as "not valid JSON", which sends its sender looking for a bug in its JSON;
    - 413 ``body_too_large``: declared or read over ``limit``, before more is read;
    - 400 ``incomplete_body``: the client went away, or its chunked body broke off, before
      the body ended (Starlette's ClientDisconnect: a refusal, not an unhandled 500).
    """
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise refusal(
            415,
            "unsupported_content_encoding",
            f"the body is {encoding}-encoded: send it uncompressed",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise refusal(413, "body_too_large", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise refusal(413, "body_too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise refusal(
            400, "incomplete_body", "the client disconnected before the body was complete"
        ) from None
    return b"".join(chunks)
