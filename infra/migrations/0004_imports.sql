-- The ledger of `memstream log import`: which event ids are known to be in the log, so that
-- importing the same history twice appends nothing the second time.
--   imported_events:      one row per event id; origin 'import' = appended by an import and
--                         acknowledged by the broker before the row was written; origin 'log'
--                         = seen in the log by an import's catch-up scan (events that came
--                         in through webhooks, the events API, or an import whose ledger write
--                         was lost in a crash).
--   import_log_positions: how far that catch-up scan has read each partition, so each import
--                         scans only what was appended since the previous one.
CREATE TABLE memstream.imported_events (
    event_id    uuid        PRIMARY KEY,
    tenant      text        NOT NULL,
    type        text        NOT NULL,
    origin      text        NOT NULL CHECK (origin IN ('import', 'log')),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memstream.import_log_positions (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
