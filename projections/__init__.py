"""Read models built from the log, and the processors that derive events, one sub-package
each; and the registry of them."""

from projections.conversations import ConversationsProjection
from projections.embeddings.processor import EmbeddingProcessor
from projections.embeddings.projection import EmbeddingsProjection
from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection
from projections.summaries import SummariesProjection, SummaryProcessor
from streams.projection import Projection

#: Every projection memstream runs, by name (what `memstream run` starts).
PROJECTIONS: dict[str, type[Projection]] = {
    ConversationsProjection.name: ConversationsProjection,
    MemoriesProjection.name: MemoriesProjection,
    ExtractionProcessor.name: ExtractionProcessor,
    EmbeddingProcessor.name: EmbeddingProcessor,
    EmbeddingsProjection.name: EmbeddingsProjection,
    SummaryProcessor.name: SummaryProcessor,
    SummariesProjection.name: SummariesProjection,
}

__all__ = ["PROJECTIONS"]
