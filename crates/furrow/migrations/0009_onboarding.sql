-- Grower onboarding: the owner's John Deere app registrations (Leaf's app keys), magic links
-- that start a browser connection, and the OAuth flows in progress.
CREATE TABLE app_keys (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES api_owners(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    app_name TEXT NOT NULL,
    -- STAGE or PRODUCTION
    client_environment TEXT NOT NULL,
    client_key TEXT NOT NULL,
    client_secret_enc TEXT NOT NULL,
    -- space-separated John Deere scopes asked for; '' = furrow's default set
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (owner_id, provider, app_name, client_environment)
);

CREATE TABLE magic_links (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES api_owners(id) ON DELETE CASCADE,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    app_key_id TEXT NOT NULL REFERENCES app_keys(id) ON DELETE CASCADE,
    widget TEXT NOT NULL,
    -- JSON: Leaf's settings object, and the allowed providers array
    settings TEXT NOT NULL,
    allowed_providers TEXT NOT NULL,
    return_url TEXT,
    max_usage BIGINT NOT NULL,
    usage_count BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    last_accessed_ms BIGINT
);
CREATE INDEX magic_links_by_owner ON magic_links(owner_id, created_at);

-- One grower's way through John Deere's consent and connections pages. The OAuth `state` and
-- the browser's binding cookie are kept only as SHA-256 hashes; the PKCE verifier and a given
-- client secret are ciphertexts.
CREATE TABLE oauth_flows (
    id TEXT PRIMARY KEY,
    state_hash TEXT NOT NULL UNIQUE,
    browser_hash TEXT,
    owner_id TEXT NOT NULL REFERENCES api_owners(id) ON DELETE CASCADE,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    magic_link_id TEXT,
    client_key TEXT NOT NULL,
    client_secret_enc TEXT NOT NULL,
    client_environment TEXT NOT NULL,
    scopes TEXT NOT NULL,
    pkce_verifier_enc TEXT NOT NULL,
    return_url TEXT,
    -- NEW (URL handed out, browser not seen yet), AUTHORIZING (browser sent to John Deere),
    -- EXCHANGING (callback took it), CONNECTING (browser at John Deere's connections page),
    -- DONE, FAILED
    phase TEXT NOT NULL,
    outcome TEXT,
    created_at TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX oauth_flows_by_expiry ON oauth_flows(expires_at_ms);
