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
-- Search finds one user's passages through two indexes the projection builds once it has
-- caught up (projection.py, caught_up): maintained row by row from the start they would
-- slow a rebuild that writes millions of passages. `passages_by_subject` (tenant, subject)
-- lists them; `passages_by_subject_search` (GIN over subject and search, btree_gin:
-- migration 0012) finds those that contain a word of the question without reading the
-- others.

-- What BM25 needs of all of a user's passages, kept so that a search reads only the
-- passages that match: how many there are and their lexemes in all (`length(search)`
-- summed). Kept by statement triggers on `passages` (every insert, update and delete, whoever
-- makes it: the projection, erasure, retention), so it is always the aggregate of the
-- user's rows; a user with no passage has no row. Created and filled from the passages
-- when missing, so a version built before it gets it at its next start.
DO $$
BEGIN
    IF to_regclass('passage_stats') IS NULL THEN
        CREATE TABLE passage_stats (
            tenant    text   NOT NULL,
            subject   text   NOT NULL,
            passages  bigint NOT NULL,
            lexemes   bigint NOT NULL,
            PRIMARY KEY (tenant, subject)
        );
        INSERT INTO passage_stats (tenant, subject, passages, lexemes)
        SELECT tenant, subject, count(*), sum(length(search))
          FROM passages GROUP BY tenant, subject;
    END IF;
END
$$;

-- The triggers run in whichever schema the statement names (the view `conversations.
-- passages` or this version's table): the functions find this version's passage_stats
-- through the table the trigger fired on. Users in (tenant, subject) order, so two
-- statements that touch the same users lock their rows in the same order.
CREATE OR REPLACE FUNCTION passage_stats_changed() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        EXECUTE format(
            'UPDATE %I.passage_stats s'
            '   SET passages = s.passages - g.passages, lexemes = s.lexemes - g.lexemes'
            '  FROM (SELECT tenant, subject, count(*) AS passages,'
            '               coalesce(sum(length(search)), 0) AS lexemes'
            '          FROM removed GROUP BY tenant, subject ORDER BY tenant, subject) g'
            ' WHERE s.tenant = g.tenant AND s.subject = g.subject',
            TG_TABLE_SCHEMA);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        EXECUTE format(
            'INSERT INTO %I.passage_stats AS s (tenant, subject, passages, lexemes)'
            ' SELECT tenant, subject, count(*), coalesce(sum(length(search)), 0)'
            '   FROM added GROUP BY tenant, subject ORDER BY tenant, subject'
            ' ON CONFLICT (tenant, subject) DO UPDATE'
            ' SET passages = s.passages + EXCLUDED.passages,'
            '     lexemes = s.lexemes + EXCLUDED.lexemes',
            TG_TABLE_SCHEMA);
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        EXECUTE format(
            'DELETE FROM %I.passage_stats s USING (SELECT DISTINCT tenant, subject FROM removed) g'
            ' WHERE s.tenant = g.tenant AND s.subject = g.subject AND s.passages <= 0',
            TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END
$f$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = 'passages'::regclass AND tgname = 'passage_stats_added') THEN
        CREATE TRIGGER passage_stats_added AFTER INSERT ON passages
            REFERENCING NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION passage_stats_changed();
        CREATE TRIGGER passage_stats_changed AFTER UPDATE ON passages
            REFERENCING OLD TABLE AS removed NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION passage_stats_changed();
        CREATE TRIGGER passage_stats_removed AFTER DELETE ON passages
            REFERENCING OLD TABLE AS removed
            FOR EACH STATEMENT EXECUTE FUNCTION passage_stats_changed();
    END IF;
END
$$;

-- Erased users: `forgotten`, the erasure watermark every read model keeps
-- (projections/erasures.py, FORGOTTEN_SQL, created with these tables).
