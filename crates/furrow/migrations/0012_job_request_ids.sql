-- The API request that queued or woke a job (x-request-id), carried into the job's log lines;
-- cleared when the job is rescheduled by its own run.
ALTER TABLE jobs ADD COLUMN request_id TEXT;
