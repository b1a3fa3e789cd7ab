"""The services' checked-in OpenAPI documents (docs/openapi/*.json): rendering, and the
command that rewrites or checks one (``python -m services.query.openapi [--check]``,
``python -m services.ingest.openapi [--check]``; ``make openapi`` rewrites both)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DOCS", "main", "render"]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "openapi"


def render(document: dict[str, Any]) -> bytes:
    """The document as it is checked in: sorted keys, two-space indent, a final newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(
    argv: list[str] | None, checked_in: Path, document: Callable[[], dict[str, Any]], module: str
) -> int:
    """Rewrite ``checked_in`` from ``document()``, or with ``--check`` exit 1 if it differs."""
    parser = argparse.ArgumentParser(description=f"rewrite or check {checked_in.name}")
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    rendered = render(document())
    if args.check:
        if not checked_in.exists() or checked_in.read_bytes() != rendered:
            print(f"{checked_in} is out of date: run python -m {module}")
            return 1
        return 0
    checked_in.parent.mkdir(parents=True, exist_ok=True)
    checked_in.write_bytes(rendered)
    print(f"wrote {checked_in}")
    return 0
