"""The checked-in JSON Schema files are exactly what the models generate."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import registered_types
from schemas.generate import (
    INDEX_FILE,
    JSON_SCHEMA_DIR,
    render_json_schemas,
    schema_file_name,
    write_json_schemas,
)

REGENERATE = "run `python -m schemas.generate` and check the files in"


def test_checked_in_json_schemas_match_the_models() -> None:
    drifted = [
        name
        for name, content in render_json_schemas().items()
        if not (JSON_SCHEMA_DIR / name).exists()
        or (JSON_SCHEMA_DIR / name).read_text(encoding="utf-8") != content
    ]

    assert not drifted, f"JSON Schemas out of date: {drifted}; {REGENERATE}"


def test_no_stale_json_schema_file_is_checked_in() -> None:
    expected = set(render_json_schemas())
    present = {path.name for path in JSON_SCHEMA_DIR.iterdir()}

    stale = sorted(present - expected)
    assert not stale, f"files that no event type generates: {stale}; {REGENERATE}"


def test_there_is_one_schema_per_registered_type_plus_the_index() -> None:
    expected = {schema_file_name(t, v) for t, v in registered_types()} | {INDEX_FILE}

    assert set(render_json_schemas()) == expected


def test_index_lists_types_versions_and_topics() -> None:
    index = json.loads(render_json_schemas()[INDEX_FILE])

    entries = {entry["type"]: entry for entry in index["events"]}
    assert entries["conversation.ended"] == {
        "type": "conversation.ended",
        "v": 2,
        "readable_versions": [1, 2],
        "topic": "conversations",
        "schema": "conversation.ended.v2.json",
    }
    assert sorted((e["type"], e["v"]) for e in index["events"]) == registered_types()


def test_schema_marks_personal_fields_and_pins_type_and_version() -> None:
    schema = json.loads(render_json_schemas()["conversation.ended.v2.json"])

    assert schema["properties"]["type"]["const"] == "conversation.ended"
    assert schema["properties"]["v"]["const"] == 2
    assert schema["additionalProperties"] is False
    data = schema["$defs"]["ConversationEndedData"]["properties"]
    assert data["turns"]["x-memstream-personal"] is True  # the transcript, as one value
    assert "x-memstream-personal" not in data["status"]
    summary = schema["$defs"]["Analysis"]["properties"]["summary"]
    assert summary["anyOf"][0]["x-memstream-personal"] is True


def test_generator_writes_sorted_pretty_files_and_removes_stale_ones(tmp_path: Path) -> None:
    (tmp_path / "conversation.ended.v1.json").write_text("{}\n", encoding="utf-8")

    written = write_json_schemas(tmp_path)

    assert {path.name for path in tmp_path.iterdir()} == set(render_json_schemas())
    assert {path.name for path in written} == set(render_json_schemas())
    content = (tmp_path / INDEX_FILE).read_text(encoding="utf-8")
    assert content.endswith("}\n")
    assert content == json.dumps(json.loads(content), indent=2, sort_keys=True) + "\n"
    assert write_json_schemas(tmp_path) == []  # unchanged files are not rewritten
