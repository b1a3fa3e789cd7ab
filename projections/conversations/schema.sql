-- The conversations read model: users, conversations, their turns and platform analysis.
-- Created unqualified inside the projection version's own schema (conversations_vN);
-- readers query the views in schema `conversations`. Every value derives from events
-- only (no now()), so a rebuild from the log gives identical rows.

CREATE TABLE IF NOT EXISTS users (
    tenant              text        NOT NULL,
    subject             text        NOT NULL,
    user_id             text,
    phone               text,
    display_name        text,
    first_seen          timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL,
    conversation_count  integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, subject)
);

CREATE TABLE IF NOT EXISTS conversations (
    tenant             text        NOT NULL,
    conversation_id    text        NOT NULL,
    subject            text        NOT NULL,
    platform           text        NOT NULL,
    agent_id           text,
    channel            text,
    status             text        NOT NULL CHECK (status IN ('started', 'ended', 'failed')),
    platform_status    text,
    started_at         timestamptz,
    ended_at           timestamptz,
    duration_secs      double precision,
    turn_count         integer     NOT NULL DEFAULT 0,
    summary            text,
    title              text,
    successful         boolean,
    analysis           jsonb,
    metadata           jsonb       NOT NULL DEFAULT '{}',
    dynamic_variables  jsonb       NOT NULL DEFAULT '{}',
    failure_reason     text,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
);
CREATE INDEX IF NOT EXISTS conversations_by_subject
    ON conversations (tenant, subject, started_at DESC);

CREATE TABLE IF NOT EXISTS turns (
    tenant           text    NOT NULL,
    conversation_id  text    NOT NULL,
    seq              integer NOT NULL,
    subject          text    NOT NULL,
    role             text    NOT NULL,
    text             text    NOT NULL,
    offset_ms        integer NOT NULL,
    tool_calls       jsonb,
    PRIMARY KEY (tenant, conversation_id, seq)
);
-- No index by subject: erasure finds a user's turns through their conversations, and
-- every turn inserted would pay for one.

-- Passages: every turn of the caller or the agent that has text, with the text of its
-- neighbours in the same conversation (passages.py, WINDOW on each side) as context. The
-- turn's own words weigh more (A) than its context's (B) in `search`; a hit cites its
-- own turn. `spoken_at`: the call's start plus the turn's offset. Vectors of the same
-- windows are in the embeddings read model (passage_vectors).
CREATE TABLE IF NOT EXISTS passages (
    tenant           text        NOT NULL,
    conversation_id  text        NOT NULL,
    seq              integer     NOT NULL,
    subject          text        NOT NULL,
    role             text        NOT NULL,
    spoken_at        timestamptz NOT NULL,
    text             text        NOT NULL,
    context          text        NOT NULL,
    search           tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', text), 'A')
        || setweight(to_tsvector('english', context), 'B')
    ) STORED,
    PRIMARY KEY (tenant, conversation_id, seq)
);
-- Search ranks one user's passages (BM25 needs all of them: their count and length),
-- through the index `passages_by_subject` (tenant, subject), built by the projection once
-- it has caught up (projection.py, caught_up): maintained row by row it would slow a
-- rebuild that writes millions of passages.

-- Erased users: `forgotten`, the erasure watermark every read model keeps
-- (projections/erasures.py, FORGOTTEN_SQL, created with these tables).
