-- btree_gin (a contrib extension shipped with PostgreSQL, trusted: a database owner may
-- create it) lets one GIN index hold a plain column beside a tsvector. The conversations
-- read model builds `passages_by_subject_search` (subject, search) with it, so a search
-- reads only the user's passages that contain a word of the question
-- (projections/conversations/projection.py, caught_up; docs/query.md, "Latency").
CREATE EXTENSION IF NOT EXISTS btree_gin;
