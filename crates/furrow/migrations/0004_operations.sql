-- Field operations synced from John Deere, one row per John Deere operation.
CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    field_id TEXT NOT NULL REFERENCES fields(id) ON DELETE CASCADE,
    provider_operation_id TEXT NOT NULL,
    operation_type TEXT NOT NULL,
    crop_season TEXT,
    start_time TEXT,
    end_time TEXT,
    start_ms BIGINT,
    end_ms BIGINT,
    data TEXT NOT NULL,
    data_hash TEXT NOT NULL,
    deleted_on_provider BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (leaf_user_id, provider_operation_id)
);
CREATE INDEX operations_by_user ON operations(leaf_user_id, start_ms);

-- The field's fieldOperation link, followed on every sync (John Deere's URL, never built).
ALTER TABLE fields ADD COLUMN operations_uri TEXT;
