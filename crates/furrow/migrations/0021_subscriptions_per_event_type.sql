-- A John Deere event subscription may cover several organizations of a credential (its orgId
-- filter lists them): a grower is subscribed once per event type, not once per organization and
-- event type (half the requests of a two-organization grower's first sync run). A row per
-- organization and event type covered stays; the rows of one subscription share its id, link
-- and token, so the token no longer identifies one row. (SQLite drops a UNIQUE constraint only
-- with the table: the table is copied.)
CREATE TABLE deere_subscriptions_by_org (
    id TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL REFERENCES jd_credentials(id) ON DELETE CASCADE,
    provider_org_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    provider_subscription_id TEXT NOT NULL,
    subscription_uri TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (credential_id, provider_org_id, event_type)
);
INSERT INTO deere_subscriptions_by_org (id, credential_id, provider_org_id, event_type,
    provider_subscription_id, subscription_uri, token_sha256, created_at)
    SELECT id, credential_id, provider_org_id, event_type, provider_subscription_id,
    subscription_uri, token_sha256, created_at FROM deere_subscriptions;
DROP TABLE deere_subscriptions;
ALTER TABLE deere_subscriptions_by_org RENAME TO deere_subscriptions;
CREATE INDEX deere_subscriptions_by_token ON deere_subscriptions(token_sha256);
