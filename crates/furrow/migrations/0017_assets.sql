-- Leaf's assets (beta): machines, implements and operators, synced from John Deere
-- (machinesAutoSync, implementsAutoSync, operatorsAutoSync) or, for machines, created by the
-- user. One table for the three kinds: they share their life cycle and differ only in their
-- fields, which `data` holds as Leaf shows them.
CREATE TABLE assets (
    id TEXT PRIMARY KEY,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    origin_type TEXT NOT NULL,
    organization_id TEXT,
    provider_asset_id TEXT,
    name TEXT NOT NULL,
    serial_number TEXT,
    vin TEXT,
    data TEXT NOT NULL,
    data_hash TEXT NOT NULL,
    deleted_on_provider BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX assets_by_user ON assets(leaf_user_id, kind, created_at);
CREATE INDEX assets_by_provider_id ON assets(leaf_user_id, kind, provider_asset_id);
