-- Synced John Deere data (clients → growers, farms, fields, boundaries), the per-URL change
-- signatures, and each Leaf user's sync status. Data belongs to the Leaf user; upserts are
-- keyed by John Deere's ids so a sync run twice changes nothing.
CREATE TABLE growers (
    id BIGINT PRIMARY KEY,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL,
    provider_grower_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (leaf_user_id, provider_grower_id)
);

CREATE TABLE farms (
    id BIGINT PRIMARY KEY,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL,
    provider_farm_id TEXT NOT NULL,
    name TEXT NOT NULL,
    provider_grower_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (leaf_user_id, provider_farm_id)
);

CREATE TABLE fields (
    id TEXT PRIMARY KEY,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL,
    provider_field_id TEXT NOT NULL,
    name TEXT NOT NULL,
    provider_farm_id TEXT,
    deleted_on_provider BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (leaf_user_id, provider_field_id)
);
CREATE INDEX fields_by_user ON fields(leaf_user_id, created_at);

CREATE TABLE boundaries (
    id TEXT PRIMARY KEY,
    field_id TEXT NOT NULL REFERENCES fields(id) ON DELETE CASCADE,
    provider_boundary_id TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_status TEXT NOT NULL,
    geometry TEXT NOT NULL,
    geometry_hash TEXT NOT NULL,
    area_ha DOUBLE PRECISION NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX boundaries_by_field ON boundaries(field_id, created_at);

CREATE TABLE deere_signatures (
    credential_id TEXT NOT NULL REFERENCES jd_credentials(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (credential_id, url)
);

CREATE TABLE sync_status (
    leaf_user_id TEXT PRIMARY KEY REFERENCES leaf_users(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    counts TEXT NOT NULL,
    last_error TEXT
);
