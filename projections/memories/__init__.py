"""The memories projection: what memstream knows about each user, with provenance and state."""

from projections.memories.projection import DECAY_PER_DAY, MemoriesProjection
from projections.memories.queries import get_memory, list_memories, top_memories

__all__ = ["DECAY_PER_DAY", "MemoriesProjection", "get_memory", "list_memories", "top_memories"]
