"""The query service's OpenAPI document, checked in at docs/openapi/query.json.

    python -m services.query.openapi          # rewrite the checked-in file
    python -m services.query.openapi --check  # exit 1 if it is out of date (tests do this)

The service also serves it live at ``/openapi.json`` (and ``/docs``).
"""

from __future__ import annotations

import sys
from typing import Any

from projections.embeddings.processor import Embedder
from services import openapi

__all__ = ["CHECKED_IN", "document", "render"]

CHECKED_IN = openapi.DOCS / "query.json"


class _NoModel:
    """Building the document needs no model: the app is never started."""

    name = "none"
    dimension = 1

    def embed(self, texts: Any) -> list[list[float]]:
        raise RuntimeError("not for serving")


def document() -> dict[str, Any]:
    from services.query.app import create_app
    from services.settings import Settings

    embedder: Embedder = _NoModel()
    app = create_app(Settings(database_url="postgresql://unused/unused"), embedder=embedder)
    return app.openapi()


def render() -> bytes:
    return openapi.render(document())


def main(argv: list[str] | None = None) -> int:
    return openapi.main(argv, CHECKED_IN, document, "services.query.openapi")


if __name__ == "__main__":
    sys.exit(main())
