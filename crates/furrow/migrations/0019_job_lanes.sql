-- Machine-data jobs (one per synced operation) and the other jobs are claimed apart. Both
-- claims used to read every due job and tell them apart by kind, so a first sync queuing tens
-- of thousands of operations slowed every claim of the sync's own parts; with the lane in a
-- column and an index each claim reads only its own lane's due jobs.
ALTER TABLE jobs ADD COLUMN machine_data INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET machine_data = 1 WHERE kind LIKE 'opdata:%';
CREATE INDEX jobs_lane_due ON jobs(machine_data, run_at_ms);
-- The sync lane's fair-share order counts a credential's jobs of that lane for every due job.
CREATE INDEX jobs_by_credential_lane ON jobs(credential_id, machine_data, lease_until_ms);
