-- Who held a job's lease when it was claimed: set only when that lease had expired without
-- being released (a replica died or stalled), so a claim can count a lease takeover.
ALTER TABLE jobs ADD COLUMN previous_lease_owner TEXT;
