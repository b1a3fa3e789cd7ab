-- Live calls (docs/architecture.md, "Live calls"): what the live processor (services/live)
-- prefetched for each call in progress, read by the agent tools and the call's context
-- stream. Rows live as long as the call: the processor deletes a call's rows a grace
-- period after its end, and a subject's rows when the subject is forgotten.
CREATE SCHEMA IF NOT EXISTS live;

CREATE TABLE IF NOT EXISTS live.prefetches (
    tenant text NOT NULL,
    conversation_id text NOT NULL,
    event_id uuid NOT NULL,          -- the context.prefetched event (one per topic)
    subject text NOT NULL,
    seq integer NOT NULL,            -- the call's topic: 1, 2, ...
    topic text NOT NULL,             -- the caller's words that opened it
    hits jsonb NOT NULL,             -- [{kind, id, text, score, said_at, conversation_id, turns}]
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, conversation_id, event_id)
);
CREATE INDEX IF NOT EXISTS prefetches_subject ON live.prefetches (tenant, subject);
