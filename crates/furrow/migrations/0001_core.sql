-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Times used for comparisons are epoch
-- milliseconds (BIGINT); times shown to users are Leaf-formatted UTC strings. Secrets are
-- ciphertexts (TEXT, see crypto.rs).
CREATE TABLE api_owners (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE login_failures (
    email TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    locked_until_ms BIGINT NOT NULL
);

CREATE TABLE instance_secrets (
    name TEXT PRIMARY KEY,
    value_enc TEXT NOT NULL
);

CREATE TABLE leaf_users (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES api_owners(id) ON DELETE CASCADE,
    name TEXT,
    email TEXT,
    phone TEXT,
    address TEXT,
    external_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX leaf_users_by_owner ON leaf_users(owner_id, created_at);

CREATE TABLE jd_credentials (
    id TEXT PRIMARY KEY,
    leaf_user_id TEXT NOT NULL UNIQUE REFERENCES leaf_users(id) ON DELETE CASCADE,
    client_key TEXT NOT NULL,
    client_secret_enc TEXT NOT NULL,
    refresh_token_enc TEXT NOT NULL,
    access_token_enc TEXT,
    access_expires_ms BIGINT,
    scopes TEXT NOT NULL,
    environment TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    created_at TEXT NOT NULL,
    last_refresh_ms BIGINT,
    last_check_ms BIGINT,
    version BIGINT NOT NULL
);

CREATE TABLE credential_events (
    id TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL REFERENCES jd_credentials(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    method TEXT,
    url TEXT,
    status_code BIGINT,
    headers TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX credential_events_by_credential ON credential_events(credential_id, created_us);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    credential_id TEXT NOT NULL REFERENCES jd_credentials(id) ON DELETE CASCADE,
    run_at_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    UNIQUE (kind, credential_id)
);
CREATE INDEX jobs_due ON jobs(run_at_ms);
