-- John Deere event subscriptions furrow created, one per credential, organization and event type.
-- Only a SHA-256 of each subscription's random token is kept: enough to recognise a delivery.
CREATE TABLE deere_subscriptions (
    id TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL REFERENCES jd_credentials(id) ON DELETE CASCADE,
    provider_org_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    provider_subscription_id TEXT NOT NULL,
    subscription_uri TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    UNIQUE (credential_id, provider_org_id, event_type)
);

-- Verified deliveries waiting to be fetched: one row per changed resource. A repeated delivery
-- for a resource still waiting bumps its generation instead of adding a row.
CREATE TABLE deere_inbox (
    id TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL REFERENCES jd_credentials(id) ON DELETE CASCADE,
    provider_org_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    target_resource TEXT NOT NULL,
    generation BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms BIGINT,
    received_ms BIGINT NOT NULL,
    UNIQUE (credential_id, target_resource)
);
CREATE INDEX deere_inbox_due ON deere_inbox(next_attempt_ms);

-- Why the last sync of an organization failed (403: unconnected, missing scope, terms to
-- accept); cleared by a successful one.
ALTER TABLE jd_organizations ADD COLUMN sync_error TEXT;

-- A job woken (manual sync, selection changed) while it runs runs again right after.
ALTER TABLE jobs ADD COLUMN woken BIGINT NOT NULL DEFAULT 0;

-- John Deere's modifiedTime of an operation (ms): an older read never overwrites a newer one.
ALTER TABLE operations ADD COLUMN provider_modified_ms BIGINT;

-- A sync run split into parts ("{orgId}/fields", "{orgId}/files"), each a one-shot job of kind
-- "part:{part}", so that replicas share one large account. The run is done when no part is PENDING.
CREATE TABLE sync_parts (
    credential_id TEXT NOT NULL REFERENCES jd_credentials(id) ON DELETE CASCADE,
    part TEXT NOT NULL,
    run_id TEXT NOT NULL,
    state TEXT NOT NULL,
    counts TEXT NOT NULL,
    error TEXT,
    -- The replica that finished the part (operations insight: how the work was shared).
    done_by TEXT,
    PRIMARY KEY (credential_id, part)
);
