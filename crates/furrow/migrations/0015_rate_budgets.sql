-- One request budget per John Deere client key, shared by every replica (domain/budget.rs):
-- a token bucket in thousandths of a request, its current (adapted) rate, when it was last
-- brought up to date, and until when a 429 stopped the key. `version` makes each draw a
-- compare-and-swap.
CREATE TABLE rate_budgets (
    client_key TEXT PRIMARY KEY,
    milli_tokens BIGINT NOT NULL,
    milli_rate BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    blocked_until_ms BIGINT NOT NULL,
    version BIGINT NOT NULL
);
