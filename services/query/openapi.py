"""The query service's OpenAPI document, checked in at docs/openapi/query.json.

    python -m services.query.openapi          # rewrite the checked-in file
    python -m services.query.openapi --check  # exit 1 if it is out of date (tests do this)

The service also serves it live at ``/openapi.json`` (and ``/docs``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from projections.embeddings.processor import Embedder

__all__ = ["CHECKED_IN", "document"]

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "query.json"


class _NoModel:
    """Building the document needs no model: the app is never started."""

    name = "none"
    dimension = 1

    def embed(self, texts: Any) -> list[list[float]]:
        raise RuntimeError("not for serving")


def document() -> dict[str, Any]:
    from services.query.app import create_app
    from streams import Settings

    embedder: Embedder = _NoModel()
    app = create_app(Settings(database_url="postgresql://unused/unused"), embedder=embedder)
    return app.openapi()


def render() -> bytes:
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        if not CHECKED_IN.exists() or CHECKED_IN.read_bytes() != rendered:
            print(f"{CHECKED_IN} is out of date: run python -m services.query.openapi")
            return 1
        return 0
    CHECKED_IN.parent.mkdir(parents=True, exist_ok=True)
    CHECKED_IN.write_bytes(rendered)
    print(f"wrote {CHECKED_IN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
