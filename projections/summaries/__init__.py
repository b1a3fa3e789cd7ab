"""Summaries: the summariser processor (``summary.generated`` events), the summaries read
model and its queries, and the :class:`Summariser` protocol with its extractive default."""

from projections.summaries.processor import DEFAULT_DEBOUNCE, SummaryProcessor
from projections.summaries.projection import SummariesProjection
from projections.summaries.queries import (
    conversation_summaries,
    conversation_summary,
    latest_profile,
)
from projections.summaries.summariser import ExtractiveSummariser, Summariser, Summary

__all__ = [
    "DEFAULT_DEBOUNCE",
    "ExtractiveSummariser",
    "SummariesProjection",
    "Summariser",
    "Summary",
    "SummaryProcessor",
    "conversation_summaries",
    "conversation_summary",
    "latest_profile",
]
