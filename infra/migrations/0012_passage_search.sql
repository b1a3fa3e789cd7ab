-- btree_gin (a contrib extension shipped with PostgreSQL, trusted: a database owner may
-- create it) lets one GIN index hold a plain column beside a tsvector. The conversations
-- read model builds `passages_by_subject_search` (subject, search) with it, so a search
-- reads only the user's passages that contain a word of the question
-- (projections/conversations/projection.py, caught_up; docs/query.md, "What the lexical
-- list reads"). Optional: where it cannot be created (a server without contrib, a role
-- that may not), the index is not built and search reads all of a user's passages: the
-- same answers, slower.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS btree_gin;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'btree_gin not available (%): passage search will not use its GIN index',
        SQLERRM;
END
$$;
