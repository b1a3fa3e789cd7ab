"""Write the JSON Schema of every event type to ``schemas/jsonschema/``.

Run ``python -m schemas.generate`` after changing an event type and check the
files in; a unit test fails while they differ from the models. One file per
type at its latest version, ``<type>.v<N>.json``, plus ``index.json`` listing
types, versions (including those still read through upcasters) and topics.

The schemas are generated in pydantic's *validation* mode: they describe what
:func:`schemas.wire.decode_event` accepts once a record is at the latest version,
so fields with a default are optional. Personal text fields carry
``"x-memstream-personal": true``: on the wire they hold the codec's output.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from schemas import events as _events  # noqa: F401  (defining the event classes registers them)
from schemas.envelope import event_class, readable_versions, registered_types

__all__ = [
    "JSON_SCHEMA_DIR",
    "main",
    "render_json_schemas",
    "schema_file_name",
    "write_json_schemas",
]

logger = logging.getLogger(__name__)

JSON_SCHEMA_DIR = Path(__file__).parent / "jsonschema"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
INDEX_FILE = "index.json"


def schema_file_name(event_type: str, v: int) -> str:
    """``conversation.ended``, 2 -> ``conversation.ended.v2.json``."""
    return f"{event_type}.v{v}.json"


def _dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_json_schemas() -> dict[str, str]:
    """Every schema file's name and exact content, including ``index.json``."""
    files: dict[str, str] = {}
    index: list[dict[str, Any]] = []
    for event_type, v in registered_types():
        cls = event_class(event_type)
        schema = {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"memstream:{event_type}.v{v}",
            **cls.model_json_schema(mode="validation"),
        }
        name = schema_file_name(event_type, v)
        files[name] = _dumps(schema)
        index.append(
            {
                "type": event_type,
                "v": v,
                "readable_versions": readable_versions(event_type),
                "topic": cls.topic,
                "schema": name,
            }
        )
    files[INDEX_FILE] = _dumps({"events": index})
    return files


def write_json_schemas(directory: Path = JSON_SCHEMA_DIR) -> list[Path]:
    """Regenerate ``directory``: write every schema and delete stale ``.json`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    files = render_json_schemas()
    for stale in sorted(set(p.name for p in directory.glob("*.json")) - files.keys()):
        (directory / stale).unlink()
        logger.info("removed stale %s", stale)
    written = []
    for name, content in files.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            written.append(path)
    return written


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = write_json_schemas()
    for path in written:
        logger.info("wrote %s", path)
    logger.info("%d file(s) changed in %s", len(written), JSON_SCHEMA_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
