-- Two indexes on jobs that newer ones cover: due jobs are found by lane (jobs_lane_due), a
-- credential's jobs by jobs_by_credential_lane. Every job inserted (one per synced operation,
-- tens of thousands in a large first sync) updated both for nothing.
DROP INDEX IF EXISTS jobs_due;
DROP INDEX IF EXISTS jobs_by_credential;
