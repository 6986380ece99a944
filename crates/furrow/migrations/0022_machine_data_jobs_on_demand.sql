-- A new operation's machine-data processing is queued in its status row alone (job_pending = 1):
-- the machine-data lane makes its job when it has room to run it. A first sync writes tens of
-- thousands of new operations, and a job row each (five B-trees on SQLite) was a fifth of
-- SQLite's disk writes in the 500-grower benchmark and a tenth of PostgreSQL's CPU.
ALTER TABLE operation_data ADD COLUMN job_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX operation_data_job_pending ON operation_data(updated_at) WHERE job_pending = 1;
