-- The vector read model (schema embeddings_vN, views in `embeddings`): one vector per
-- memory and model, and the links between a user's memories. Every value derives from
-- embedding.computed events, so a rebuild from the log calls no model.

CREATE TABLE IF NOT EXISTS embeddings (
    tenant       text        NOT NULL,
    memory_id    uuid        NOT NULL,
    model        text        NOT NULL,
    subject      text        NOT NULL,
    dimension    integer     NOT NULL,
    -- Unsized: models of different dimensions coexist. Each model gets its own HNSW
    -- index over a sized cast, built once the projection has caught up (projection.py).
    embedding    vector      NOT NULL,
    observed_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, memory_id, model)
);
CREATE INDEX IF NOT EXISTS embeddings_by_subject ON embeddings (tenant, subject, model);

-- Links between two memories of the same user whose vectors (same model) have cosine
-- >= 0.8: for each new vector its 5 nearest, in both directions.
CREATE TABLE IF NOT EXISTS links (
    tenant     text  NOT NULL,
    model      text  NOT NULL,
    memory_id  uuid  NOT NULL,
    linked_id  uuid  NOT NULL,
    subject    text  NOT NULL,
    weight     real  NOT NULL CHECK (weight BETWEEN -1 AND 1),
    PRIMARY KEY (tenant, model, memory_id, linked_id)
);

-- Erased users: `forgotten`, the erasure watermark every read model keeps
-- (projections/erasures.py, FORGOTTEN_SQL, created with these tables).

-- Passages (the conversations read model's passages table) as vectors: one per turn,
-- conversation and model, embedded in its window of neighbours. Searched one user at a
-- time, exactly (a user's few thousand passages); no links. Stored at half precision
-- (halfvec, 2 bytes a value): the search reads every vector of the user, and half the
-- bytes made it a third faster for the heaviest users (docs/query.md, Figures), while
-- the rounding (relative 2^-11 a value) moves a cosine by about 1e-4. A version created
-- before this (a `vector` column) keeps working as it is (projection.py, search.py).
CREATE TABLE IF NOT EXISTS passage_vectors (
    tenant           text        NOT NULL,
    conversation_id  text        NOT NULL,
    seq              integer     NOT NULL,
    model            text        NOT NULL,
    subject          text        NOT NULL,
    dimension        integer     NOT NULL,
    embedding        halfvec     NOT NULL,
    observed_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant, conversation_id, seq, model)
);
CREATE INDEX IF NOT EXISTS passage_vectors_by_subject
    ON passage_vectors (tenant, subject, model);
