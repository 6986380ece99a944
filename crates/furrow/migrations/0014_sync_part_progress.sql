-- A part's progress while it runs (JSON: items so far, requests so far, when it started and
-- when this was written), so the sync status can show it before the part finishes.
ALTER TABLE sync_parts ADD COLUMN progress TEXT;
