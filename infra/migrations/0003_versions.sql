-- Projection versions for the replay tooling (`memstream projections`, `memstream reprocess`).
--   config:     what this version was built with, fixed at registration so that a rebuild
--               or a restart runs it the same way: {"settings": {...}} overrides MEMSTREAM_*
--               settings (e.g. the extractor's or embedder's model), {"follows": {"extraction":
--               2}} says which version of each upstream processor's output it reads.
--   last_error: the latest error a runner of this version hit (shown by `projections status`).
ALTER TABLE memstream.projection_versions
    ADD COLUMN config        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN last_error    text,
    ADD COLUMN last_error_at timestamptz;
