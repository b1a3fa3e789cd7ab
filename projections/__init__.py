"""Read models built from the log, and the processors that derive events, one sub-package
each; and the registry of them."""

from collections.abc import Mapping
from typing import Any

from projections.audit import AuditProjection
from projections.conversations import ConversationsProjection
from projections.embeddings.processor import EmbeddingProcessor
from projections.embeddings.projection import EmbeddingsProjection
from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection
from projections.settings import ProjectionSettings
from projections.summaries import SummariesProjection, SummaryProcessor
from streams.projection import Projection

#: Every projection memstream runs, by name (what `memstream run` starts).
PROJECTIONS: dict[str, type[Projection[Any]]] = {
    ConversationsProjection.name: ConversationsProjection,
    MemoriesProjection.name: MemoriesProjection,
    ExtractionProcessor.name: ExtractionProcessor,
    EmbeddingProcessor.name: EmbeddingProcessor,
    EmbeddingsProjection.name: EmbeddingsProjection,
    SummaryProcessor.name: SummaryProcessor,
    SummariesProjection.name: SummariesProjection,
    AuditProjection.name: AuditProjection,
}


def build(
    name: str, settings: ProjectionSettings, config: Mapping[str, Any] | None = None
) -> Projection[Any]:
    """Projection `name` as one of its versions runs it: the settings, overridden by the
    version's recorded ``config["settings"]`` (see ``streams.versions.config``)."""
    overrides = dict((config or {}).get("settings") or {})
    if overrides:
        settings = settings.replace(**overrides)
    return PROJECTIONS[name].from_settings(settings)


__all__ = ["PROJECTIONS", "build"]
