-- Machine files synced from John Deere organizations; the bytes live in the file store.
CREATE TABLE machine_files (
    id TEXT PRIMARY KEY,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL,
    provider_file_id TEXT NOT NULL,
    name TEXT NOT NULL,
    file_type TEXT,
    size_bytes BIGINT NOT NULL,
    provider_created_time TEXT,
    provider_modified_time TEXT,
    created_ms BIGINT,
    status TEXT NOT NULL,
    sha256 TEXT,
    storage_key TEXT,
    deleted_on_provider BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (leaf_user_id, provider_file_id)
);
CREATE INDEX machine_files_by_user ON machine_files(leaf_user_id, created_ms);
