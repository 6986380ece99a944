-- Machine data of synced field operations: the state of each operation's processing (John
-- Deere's shapefile export → Leaf's standard data) and what it produced. The GeoJSON files and
-- images live in the file store under the keys kept here.
CREATE TABLE operation_data (
    operation_id TEXT PRIMARY KEY REFERENCES operations(id) ON DELETE CASCADE,
    leaf_user_id TEXT NOT NULL REFERENCES leaf_users(id) ON DELETE CASCADE,
    -- QUEUED, PROCESSING, PROCESSED, FAILED (gave up after retries), NO_DATA (John Deere has
    -- no shapefile for it: 406)
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    message TEXT,
    -- JSON array of {time, message}: what happened to this operation's processing, newest last
    events TEXT NOT NULL,
    standard_key TEXT,
    filtered_key TEXT,
    summary TEXT,
    units TEXT,
    images TEXT,
    coverage DOUBLE PRECISION,
    points BIGINT,
    filtered_points BIGINT,
    removed TEXT,
    processed_at TEXT,
    updated_at TEXT NOT NULL
);
