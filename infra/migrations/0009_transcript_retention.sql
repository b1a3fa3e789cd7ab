-- Transcript retention (docs/architecture.md, "Retention"): how long a tenant's call
-- transcripts stay readable, NULL for ever. `memstream tenants update TENANT
-- --transcript-retention 90d` sets it; the retention worker (`memstream run`) or
-- `memstream retention run` carries it out.
ALTER TABLE memstream.tenants ADD COLUMN transcript_retention interval
    CHECK (transcript_retention >= interval '1 hour');

-- Transcripts are sealed twice over: with the subject's key and with a key of the UTC day
-- the call began in, one per tenant and day. Those period keys are rows of
-- memstream.subject_keys too (wrapped, rotated, destroyed and polled like a subject's),
-- whose `subject_hash` is `transcripts/<YYYY-MM-DD>` (a subject hash is 32 hex digits:
-- the two never meet). Retention destroys a day's key once the day plus the retention is
-- over; `erased_at` is then when it did.
COMMENT ON COLUMN memstream.subject_keys.subject_hash IS
    'the subject''s keyed hash, or transcripts/<YYYY-MM-DD> for a tenant''s period key';
