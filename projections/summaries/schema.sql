-- The summaries read model (schema summaries_vN, views in `summaries`): the latest
-- profile of each user and the summary of each conversation, with the generator that
-- wrote them and what they were built from. Every value comes from summary.generated
-- and user.forgotten events (no now()), so a rebuild from the log gives identical rows.
--
-- Summaries and erasures come from two topics with no order between them, and a
-- summary can be appended twice (a processor batch replayed after a crash), so every
-- write is an order-independent merge: a row is replaced only by a summary that ranks
-- higher (see projection.py), and a summary an erasure covers is dropped on arrival.

CREATE TABLE IF NOT EXISTS profiles (
    tenant             text        NOT NULL,
    subject            text        NOT NULL,
    event_id           uuid        NOT NULL,
    text               text        NOT NULL,
    generator          text        NOT NULL,
    generator_version  text        NOT NULL,
    sequence           integer     NOT NULL,
    memory_count       integer     NOT NULL,
    memory_ids         uuid[]      NOT NULL,
    last_event_id      uuid        NOT NULL,
    as_of              timestamptz NOT NULL,
    generated_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant, subject)
);

CREATE TABLE IF NOT EXISTS conversation_summaries (
    tenant             text        NOT NULL,
    conversation_id    text        NOT NULL,
    subject            text        NOT NULL,
    event_id           uuid        NOT NULL,
    text               text        NOT NULL,
    generator          text        NOT NULL,
    generator_version  text        NOT NULL,
    -- platform 2, llm:<model> 1, extractive 0: the platform's own summary wins.
    rank               smallint    NOT NULL,
    memory_count       integer     NOT NULL,
    memory_ids         uuid[]      NOT NULL,
    last_event_id      uuid        NOT NULL,
    as_of              timestamptz NOT NULL,
    generated_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
);
CREATE INDEX IF NOT EXISTS conversation_summaries_by_subject
    ON conversation_summaries (tenant, subject, as_of DESC);

-- Erased users: `forgotten`, the erasure watermark every read model keeps
-- (projections/erasures.py, FORGOTTEN_SQL, created with these tables).
