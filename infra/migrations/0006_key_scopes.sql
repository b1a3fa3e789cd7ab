-- What an API key may do (docs/security.md). Keys issued before scopes existed keep
-- working as `admin`: the default fills them in.
ALTER TABLE memstream.api_keys
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{admin}'
        CHECK (cardinality(scopes) > 0
               AND scopes <@ ARRAY['agent', 'read', 'write', 'ingest', 'admin']::text[]),
    -- Whether the agent tools may take the caller from a `user` argument when the
    -- platform binds no caller to the call. Off unless the tenant turns it on for a key:
    -- tool arguments are written by the LLM.
    ADD COLUMN allow_user_argument boolean NOT NULL DEFAULT false;
