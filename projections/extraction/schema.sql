-- The extraction processor's own state (schema extraction_vN), kept in the same
-- transaction as its checkpoints: what it needs to decide whether a candidate is a new
-- memory, a reinforcement of a known one, or a replacement for a slot.

-- Known memories per user: from extraction and from memory.asserted.
CREATE TABLE IF NOT EXISTS facts (
    tenant      text    NOT NULL,
    subject     text    NOT NULL,
    memory_id   uuid    NOT NULL,
    normalised  text    NOT NULL,
    key         text,
    state       text    NOT NULL CHECK (state IN ('active', 'superseded', 'retracted')),
    -- Insertion order: facts are compared in the order they became known.
    seq         bigint  GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (tenant, memory_id)
);
CREATE INDEX IF NOT EXISTS facts_by_subject ON facts (tenant, subject);
-- When the memory was first said (its extraction's observed_at, an assertion's time):
-- memory retention (services/retention.py) forgets the facts past the tenant's period, so
-- a fact said again after its memory expired is a new memory. NULL in rows of before it;
-- retention finds those through the memories read model.
ALTER TABLE facts ADD COLUMN IF NOT EXISTS observed_at timestamptz;

-- Conversation events already extracted (a redelivered webhook is appended twice).
CREATE TABLE IF NOT EXISTS processed (
    tenant    text NOT NULL,
    event_id  uuid NOT NULL,
    PRIMARY KEY (tenant, event_id)
);

-- The answer journal: extractions of a non-deterministic extractor (an LLM) written and
-- committed on their own BEFORE the batch's memory events are appended, and deleted in
-- the batch's transaction. A crash between the append and the commit leaves the rows, so
-- the replayed batch reuses the answers instead of asking the model again (which could
-- answer differently and append memories with other ids). Empty between batches.
CREATE TABLE IF NOT EXISTS answers (
    tenant      text  NOT NULL,
    event_id    uuid  NOT NULL,
    subject     text  NOT NULL,
    extraction  jsonb NOT NULL,
    PRIMARY KEY (tenant, event_id)
);

-- Erased users: `forgotten`, the erasure watermark every read model and processor keeps
-- (projections/erasures.py, FORGOTTEN_SQL, created with these tables). The facts and
-- answers of a user go with their erasure; `processed` names events, not users.
