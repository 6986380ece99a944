-- Leaf alerts: application webhooks, a durable outbox of deliveries, and failed calls.
CREATE TABLE alert_webhooks (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES api_owners(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE alert_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES alert_webhooks(id) ON DELETE CASCADE,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms BIGINT,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX alert_deliveries_due ON alert_deliveries(state, next_attempt_ms);

CREATE TABLE alert_failed_calls (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES api_owners(id) ON DELETE CASCADE,
    webhook_id TEXT NOT NULL,
    url TEXT NOT NULL,
    status BIGINT,
    response TEXT,
    connection_error TEXT,
    request_body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_us BIGINT NOT NULL
);
