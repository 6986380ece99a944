-- John Deere organizations per credential, with Leaf's sync-management status, and the
-- Configurations service (owner level: leaf_user_id = '').
CREATE TABLE jd_organizations (
    credential_id TEXT NOT NULL REFERENCES jd_credentials(id) ON DELETE CASCADE,
    provider_org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    connected BIGINT NOT NULL,
    management_uri TEXT,
    links TEXT NOT NULL,
    position BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (credential_id, provider_org_id)
);

CREATE TABLE configs (
    owner_id TEXT NOT NULL REFERENCES api_owners(id) ON DELETE CASCADE,
    leaf_user_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (owner_id, leaf_user_id)
);
