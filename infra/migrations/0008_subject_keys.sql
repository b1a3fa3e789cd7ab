-- Crypto-shredding (docs/architecture.md, "Personal data and erasure"): every subject's
-- personal data is encrypted on the wire with a data key of its own, kept here wrapped
-- (encrypted) by the master key (MEMSTREAM_MASTER_KEY). Erasing a subject destroys its
-- key: the row stays as a tombstone, without key material, and says when the erasure
-- happened (events of the subject dated at or before it are erased, whichever key
-- sealed them). A subject that comes back after an erasure gets a new key (version + 1).
CREATE TABLE memstream.subject_keys (
    -- Named in every value the key sealed: enc:v1:<key_id>:...
    key_id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text        NOT NULL,
    -- The subject's keyed hash (its pseudonym, also the Kafka key): never the subject.
    subject_hash   text        NOT NULL,
    version        integer     NOT NULL,
    -- Which master key wrapped it (`memstream encryption rotate-master` re-wraps).
    master_key_id  text,
    wrapped_key    bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    destroyed_at   timestamptz,
    -- On a tombstone: the time of the erasure it carried out (user.forgotten's occurred_at).
    erased_at      timestamptz,
    UNIQUE (tenant, subject_hash, version),
    CHECK ((wrapped_key IS NULL) = (master_key_id IS NULL)),
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL)),
    CHECK ((destroyed_at IS NULL) = (erased_at IS NULL))
);
-- At most one usable key per subject: concurrent first writers agree on one.
CREATE UNIQUE INDEX subject_keys_live ON memstream.subject_keys (tenant, subject_hash)
    WHERE destroyed_at IS NULL;
-- Every process polls the recent destructions to drop them from its key cache.
CREATE INDEX subject_keys_destroyed ON memstream.subject_keys (destroyed_at)
    WHERE destroyed_at IS NOT NULL;

-- Keys of the deployment, wrapped by the master key like the subjects' keys:
-- `pseudonyms` keys the subjects' hash, `erasures` seals the subject of user.forgotten
-- events (the record of who was forgotten outlives their key).
CREATE TABLE memstream.deployment_keys (
    name           text        PRIMARY KEY,
    master_key_id  text        NOT NULL,
    wrapped_key    bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
