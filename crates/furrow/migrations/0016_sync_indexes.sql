-- Lookups the sync makes for every field, organization and credential, which without these
-- scanned whole tables (a first sync of many growers slowed as the tables grew): a field's
-- operations, an organization's fields and files, a credential's jobs and how many of them run
-- (the claim query's fair-share order counts them for every due job).
CREATE INDEX operations_by_field ON operations(field_id);
CREATE INDEX fields_by_organization ON fields(leaf_user_id, organization_id);
CREATE INDEX machine_files_by_organization ON machine_files(leaf_user_id, organization_id);
CREATE INDEX jobs_by_credential ON jobs(credential_id, lease_until_ms);
