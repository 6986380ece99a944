-- Organizations the grower reaches through a John Deere partnership (`member: false`): synced
-- only when the user's `syncPartnerData` configuration is on.
ALTER TABLE jd_organizations ADD COLUMN partner INTEGER NOT NULL DEFAULT 0;
