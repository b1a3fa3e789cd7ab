"""Lineage: which version of a processor derived an event, and which one a reader follows.

A processor (extraction, embedder, summarizer) runs as versions like any projection. When
``memstream reprocess`` runs a new version beside the live one (a different extractor, a
different embedding model), both append derived events to the same topic. Each record
says which version appended it in a Kafka header, ``lineage: <processor>.v<N>``; records
without the header (appended before lineage existed) count as ``v1`` of the processor
that writes that topic.

A projection version that reads derived events records, in its config, the lineage it
follows per logical topic (``{"follows": {"memories": "extraction.v2"}}``); the runtime
passes it only those records and checkpoints past the others. So memories extracted by
the rules and by an LLM can live side by side in the log, each read model version built
from exactly one of them, and a switch of live versions changes which one is served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HEADER = "lineage"


def tag(processor: str, version: int) -> str:
    """The lineage of version `version` of `processor`, e.g. ``extraction.v2``."""
    return f"{processor}.v{version}"


def header(processor: str, version: int) -> tuple[str, bytes]:
    """The Kafka header a processor's version stamps on every event it appends."""
    return (HEADER, tag(processor, version).encode())


def stamp(processor: str, version: int, produces: Sequence[str]) -> list[tuple[str, bytes]]:
    """The headers a projection version's producer puts on what it appends: its lineage
    if it is a processor (it `produces` topics), nothing for a read model."""
    return [header(processor, version)] if produces else []


class Follows:
    """Which lineage to read per physical topic; the runtime's filter."""

    def __init__(self, follows: Mapping[str, str], physical: Mapping[str, str]) -> None:
        """`follows`: logical topic -> lineage (a version's config); `physical`: logical
        topic -> physical topic name."""
        self._expected = {physical[t]: lineage for t, lineage in follows.items()}
        # An unstamped record is v1 of the processor that writes the topic.
        self._unstamped = {
            topic: lineage.rsplit(".v", 1)[0] + ".v1" for topic, lineage in self._expected.items()
        }

    def __bool__(self) -> bool:
        return bool(self._expected)

    def accepts(self, topic: str, headers: Sequence[tuple[str, bytes]] | None) -> bool:
        """Whether a record of `topic` with these headers belongs to the followed lineage."""
        expected = self._expected.get(topic)
        if expected is None:
            return True
        for name, value in headers or ():
            if name == HEADER:
                return value.decode("utf-8", "replace") == expected
        return self._unstamped[topic] == expected


def follows_of(config: Mapping[str, Any]) -> dict[str, str]:
    """The ``follows`` part of a version's config (logical topic -> lineage)."""
    return {str(k): str(v) for k, v in (config.get("follows") or {}).items()}
