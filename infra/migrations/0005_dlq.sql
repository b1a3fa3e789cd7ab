-- How each dead letter was resolved (`memstream dlq replay|purge`). The letters themselves
-- stay on the DLQ topic forever (the record of what was not projected); a letter without a
-- row here is pending. The primary key is what makes a replay exactly-once: the replay
-- inserts this row in the same transaction as the letter's effect on the read model, so a
-- second replay (or a concurrent one, which waits on the key) finds it and projects nothing.
CREATE TABLE memstream.dead_letter_resolutions (
    letter_id     uuid        PRIMARY KEY,           -- the dead letter's id (streams.dlq)
    projection    text        NOT NULL,
    version       integer     NOT NULL,              -- the version the event failed in
    resolution    text        NOT NULL CHECK (resolution IN ('replayed', 'purged')),
    -- The version a replay projected into: `version`, or the live one (`--to-live`) when
    -- that version had been dropped. NULL for a purge.
    into_version  integer     CHECK ((resolution = 'replayed') = (into_version IS NOT NULL)),
    reason        text,                              -- why it was purged, as the operator said
    resolved_by   text,                              -- the operating-system user, for audit
    resolved_at   timestamptz NOT NULL DEFAULT now()
);
