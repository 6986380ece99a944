-- Leaf's preview mode (customDataSync): a field's own sync state — PREVIEW (listed, no
-- boundaries or operations read), WAITING (enabled, read at the next sync), PROCESSED — and the
-- link to its boundaries, so an enabled field is read without re-reading its organization.
ALTER TABLE fields ADD COLUMN sync_state TEXT NOT NULL DEFAULT 'PROCESSED';
ALTER TABLE fields ADD COLUMN boundaries_uri TEXT
