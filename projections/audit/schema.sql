-- The audit read model (projections/audit): one row per audit entry (streams/audit.py),
-- who read or erased whose personal data. Subjects only by their hash; never deleted by
-- an erasure (the reads of an erased subject are what the trail is for).
CREATE TABLE IF NOT EXISTS entries (
    tenant          text        NOT NULL,
    entry_id        uuid        NOT NULL,
    type            text        NOT NULL,  -- audit.read | audit.erasure
    subject_hash    text        NOT NULL,  -- the subject's pseudonym, 32 hex
    key_id          text,                  -- NULL: not through an API key (the CLI)
    route           text        NOT NULL,  -- "GET /v1/users/{user}", or the command
    at              timestamptz NOT NULL,
    status          integer     NOT NULL,
    results         integer,               -- NULL: not known when recorded
    conversation_id text,
    PRIMARY KEY (tenant, entry_id)
);
-- `memstream audit --user`: one subject's trail, newest first.
CREATE INDEX IF NOT EXISTS entries_by_subject ON entries (tenant, subject_hash, at DESC);
-- `memstream audit --key`: what one API key read (a leaked key's reach).
CREATE INDEX IF NOT EXISTS entries_by_key ON entries (tenant, key_id, at DESC);
