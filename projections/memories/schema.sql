-- The memories read model: what memstream knows about each user, with its provenance.
-- Created unqualified inside the projection version's own schema (memories_vN); readers
-- query the views in schema `memories`. Every value derives from events only (no now()):
-- decay is computed when reading, from observed_at / last_seen_at, so a rebuild from the
-- log gives identical rows.
--
-- Events reach this projection from two topics (memories: extracted, reinforced,
-- superseded; conversations: asserted, retracted, forgotten) with no order between
-- them, so every write merges order-independently: a retraction or supersession that
-- arrives before its memory leaves a row without content that the memory later fills,
-- and the state only ever moves towards retracted.

CREATE TABLE IF NOT EXISTS memories (
    tenant               text        NOT NULL,
    memory_id            uuid        NOT NULL,
    subject              text        NOT NULL,
    content              text,
    sector               text        CHECK (sector IN ('semantic', 'episodic', 'procedural',
                                                       'emotional', 'reflective')),
    salience             real        CHECK (salience BETWEEN 0 AND 1),
    -- Per-day exponential decay of salience, by sector (see projection.py DECAY_PER_DAY).
    decay_rate           real,
    state                text        NOT NULL DEFAULT 'active'
                                     CHECK (state IN ('active', 'superseded', 'retracted')),
    superseded_by        uuid,
    kind                 text,
    key                  text,
    origin               text        CHECK (origin IN ('extracted', 'asserted')),
    extractor            text,
    extractor_version    text,
    conversation_id      text,
    provenance           jsonb       NOT NULL DEFAULT '[]',
    reinforcement_count  integer     NOT NULL DEFAULT 0,
    observed_at          timestamptz,
    last_seen_at         timestamptz,
    updated_at           timestamptz NOT NULL,
    -- The day it was said, as words ("2026-11-19 November 2026 Thursday"): questions
    -- name dates. Written by the projection (to_char is not immutable).
    observed_on          text,
    search               tsvector GENERATED ALWAYS AS (
        to_tsvector('english', coalesce(content, '') || ' ' || coalesce(observed_on, ''))
    ) STORED,
    PRIMARY KEY (tenant, memory_id)
);
-- The briefing and search read one user's active memories.
CREATE INDEX IF NOT EXISTS memories_by_subject
    ON memories (tenant, subject, salience DESC) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS memories_search ON memories USING gin (search);
-- Search reads which of one user's superseded and retracted memories cite a passage.
CREATE INDEX IF NOT EXISTS memories_inactive_by_subject
    ON memories (tenant, subject) WHERE state <> 'active';

-- One row per memory.reinforced event: the count is their number, so a redelivered
-- event counts once.
CREATE TABLE IF NOT EXISTS reinforcements (
    tenant           text        NOT NULL,
    event_id         uuid        NOT NULL,
    memory_id        uuid        NOT NULL,
    subject          text        NOT NULL,
    observed_at      timestamptz NOT NULL,
    provenance       jsonb       NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX IF NOT EXISTS reinforcements_by_memory ON reinforcements (tenant, memory_id);

-- Erased users: `forgotten`, the erasure watermark every read model keeps
-- (projections/erasures.py, FORGOTTEN_SQL, created with these tables).
