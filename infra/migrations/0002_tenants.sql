-- Tenants and their credentials, shared by the ingest and query services.
CREATE TABLE memstream.tenants (
    tenant          text        PRIMARY KEY CHECK (tenant ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name            text        NOT NULL,
    -- Region for caller numbers given without a country code (ISO 3166 alpha-2), or NULL.
    default_region  text        CHECK (default_region ~ '^[A-Z]{2}$'),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- API keys: the token is `msk_<key_id>_<secret>`; only a SHA-256 of the secret is kept.
-- (The secret is 256 random bits: a slow password hash would add nothing but latency.)
CREATE TABLE memstream.api_keys (
    key_id       text        PRIMARY KEY,
    tenant       text        NOT NULL REFERENCES memstream.tenants ON DELETE CASCADE,
    secret_hash  bytea       NOT NULL,
    label        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_by_tenant ON memstream.api_keys (tenant);

-- Webhook secrets: HMAC keys (ElevenLabs, Vapi, Retell) and bearer tokens the platforms
-- send. They must be kept usable to compute signatures, so they are stored as given.
-- Several active per tenant and platform at once: that is how rotation works.
CREATE TABLE memstream.webhook_secrets (
    secret_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      text        NOT NULL REFERENCES memstream.tenants ON DELETE CASCADE,
    platform    text        NOT NULL
                            CHECK (platform IN ('elevenlabs', 'elevenlabs-init', 'vapi', 'retell')),
    secret      text        NOT NULL CHECK (length(secret) >= 16),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX webhook_secrets_active ON memstream.webhook_secrets (tenant, platform)
    WHERE revoked_at IS NULL;
