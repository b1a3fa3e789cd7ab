-- Memory retention (docs/architecture.md, "Retention"): how long a tenant's memories stay
-- readable after the UTC day each was first extracted (or asserted), NULL for ever.
-- `memstream tenants update TENANT --memory-retention 1y` sets it; the retention worker
-- (`memstream run`) or `memstream retention run` carries it out, as for transcripts.
ALTER TABLE memstream.tenants ADD COLUMN IF NOT EXISTS memory_retention interval
    CHECK (memory_retention >= interval '1 hour');

-- A memory's content (and its vector) is sealed twice over like a transcript: with the
-- subject's key and with a period key of the UTC day the memory was first said in, of a
-- second family: rows of memstream.subject_keys whose `subject_hash` is
-- `memories/<YYYY-MM-DD>`. Retention destroys them as it destroys `transcripts/<day>`.
COMMENT ON COLUMN memstream.subject_keys.subject_hash IS
    'the subject''s keyed hash, or transcripts/<YYYY-MM-DD> or memories/<YYYY-MM-DD> for a tenant''s period key';
