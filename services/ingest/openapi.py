"""The ingest service's OpenAPI document, checked in at docs/openapi/ingest.json.

    python -m services.ingest.openapi          # rewrite the checked-in file
    python -m services.ingest.openapi --check  # exit 1 if it is out of date (tests do this)

The document is the one ``/openapi.json`` serves: FastAPI's, completed by
services/ingest/describe.py with what the routes read raw.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from services import openapi
from services.ingest.app import create_app
from services.ingest.describe import describe
from services.settings import Settings

__all__ = ["CHECKED_IN", "document", "render"]

CHECKED_IN = openapi.DOCS / "ingest.json"


def document() -> dict[str, Any]:
    """The document, from an app that is never started (no broker or database needed)."""

    async def build() -> dict[str, Any]:
        # The app's producer is made in create_app, and aiokafka wants a running loop.
        settings = Settings(database_url="postgresql://unused/unused", kafka_bootstrap="unused:1")
        app = create_app(settings)
        try:
            return describe(app)
        finally:
            await app.state.service.stop()

    return asyncio.run(build())


def render() -> bytes:
    return openapi.render(document())


def main(argv: list[str] | None = None) -> int:
    return openapi.main(argv, CHECKED_IN, document, "services.ingest.openapi")


if __name__ == "__main__":
    sys.exit(main())
