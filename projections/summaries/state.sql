-- The summariser processor's own state (schema summarizer_vN), kept in the same
-- transaction as its checkpoints: each user's memories as the processor has applied
-- them, and when their profile is due. It reads no other projection's tables.
--
-- Memory events come from two topics with no order between them (memories:
-- extracted, reinforced, superseded; conversations: asserted, retracted, forgotten),
-- so rows merge order-independently, as in the memories read model: a state change
-- that arrives first leaves a row without content, and the state only moves towards
-- retracted.

CREATE TABLE IF NOT EXISTS memories (
    tenant          text        NOT NULL,
    memory_id       uuid        NOT NULL,
    subject         text        NOT NULL,
    content         text,
    sector          text,
    kind            text,
    salience        double precision,
    state           text        NOT NULL CHECK (state IN ('active', 'superseded', 'retracted')),
    reinforcements  integer     NOT NULL DEFAULT 0,
    observed_at     timestamptz,
    last_seen_at    timestamptz,
    -- Event time of the newest event about this memory (an erasure covers the row when
    -- it is at or after it).
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant, memory_id)
);
CREATE INDEX IF NOT EXISTS memories_by_subject ON memories (tenant, subject);

-- One row per memory.reinforced event applied, so a redelivered one counts once.
CREATE TABLE IF NOT EXISTS reinforcements (
    tenant       text         NOT NULL,
    event_id     uuid         NOT NULL,
    subject      text         NOT NULL,
    observed_at  timestamptz  NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX IF NOT EXISTS reinforcements_by_subject ON reinforcements (tenant, subject);

-- Per user: what the next profile would include, and the debounce (processor.py).
-- The row is locked (FOR UPDATE) by the batch that changes the user or flushes their
-- pending profile, so two consumer-group members never build one user's profile from
-- each other's uncommitted state.
CREATE TABLE IF NOT EXISTS profiles (
    tenant          text        NOT NULL,
    subject         text        NOT NULL,
    -- The newest event that changed the user's memories.
    last_event_id   uuid,
    -- Changed since the last profile: a profile is pending.
    pending         boolean     NOT NULL DEFAULT false,
    -- Log time (the batch's newest recorded_at) when the last profile was emitted.
    profiled_at     timestamptz,
    -- Profiles emitted so far for this user (the next one is sequence + 1).
    sequence        integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, subject)
);
-- A user's erasure is in `forgotten` (projections/erasures.py, by pseudonym): memory
-- events about what they said before it are dropped on arrival, and the row of a user
-- erased with nothing since is deleted (it names them).
CREATE INDEX IF NOT EXISTS profiles_pending ON profiles (profiled_at) WHERE pending;
