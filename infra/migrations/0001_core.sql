-- memstream's core tables: the projection registry and the checkpoints the projection
-- runtime commits in the same transaction as the rows they cover.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE SCHEMA IF NOT EXISTS memstream;

-- One row per (projection, version). Exactly one version of a projection is live: its
-- tables are what the read views of the projection's schema point at.
CREATE TABLE memstream.projection_versions (
    projection   text        NOT NULL,
    version      integer     NOT NULL CHECK (version > 0),
    state        text        NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    start_at     timestamptz,            -- NULL: built from the earliest offset
    created_at   timestamptz NOT NULL DEFAULT now(),
    live_since   timestamptz,
    PRIMARY KEY (projection, version)
);
CREATE UNIQUE INDEX projection_versions_one_live
    ON memstream.projection_versions (projection) WHERE state = 'live';

-- The next offset to project, per projection version and partition. Kafka's committed
-- offsets are informational only; a runner always seeks to these on assignment.
CREATE TABLE memstream.checkpoints (
    projection   text        NOT NULL,
    version      integer     NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL CHECK (partition >= 0),
    next_offset  bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, version, topic, partition),
    FOREIGN KEY (projection, version)
        REFERENCES memstream.projection_versions (projection, version) ON DELETE CASCADE
);
