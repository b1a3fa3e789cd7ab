"""Period key owners of both families (streams/subject_keys.py): ``transcripts/<day>`` and
``memories/<day>``, by UTC day, and how a memory's content and vector are marked."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from schemas import EmbeddingComputed, MemoryAsserted, MemoryExtracted, event_class
from schemas.codec import MEMORY_JSON_SCHEMA_KEY, MEMORY_PERIODS, TRANSCRIPT_PERIODS
from streams.subject_keys import next_period, period_family, period_owner


def test_an_owner_is_the_family_and_the_utc_day() -> None:
    late = datetime(2026, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert period_owner(late) == "transcripts/2026-02-01"
    assert period_owner(late, MEMORY_PERIODS) == "memories/2026-02-01"
    assert next_period("memories/2026-02-28") == "memories/2026-03-01"
    assert next_period("transcripts/2026-12-31") == "transcripts/2027-01-01"


def test_only_a_known_family_is_a_period() -> None:
    assert period_family("memories/2026-02-01") == MEMORY_PERIODS
    assert period_family("transcripts/2026-02-01") == TRANSCRIPT_PERIODS
    assert period_family("0123456789abcdef0123456789abcdef") is None  # a subject's hash
    assert period_family("other/2026-02-01") is None


def test_memory_events_are_sealed_with_the_memories_family() -> None:
    for cls in (MemoryExtracted, MemoryAsserted, EmbeddingComputed):
        assert cls.period_family == MEMORY_PERIODS
    assert event_class("conversation.ended").period_family == TRANSCRIPT_PERIODS
    assert event_class("memory.reinforced").period_family is None
    schema = str(MemoryExtracted.model_json_schema()) + str(EmbeddingComputed.model_json_schema())
    assert schema.count(MEMORY_JSON_SCHEMA_KEY) == 2  # content, vector
