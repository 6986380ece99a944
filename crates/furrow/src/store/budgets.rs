//! Client keys' request budgets (see `domain::budget`), changed by compare-and-swap on a version
//! so that replicas drawing at once never spend the same requests twice.

use sqlx::Row;

use super::{now_ms, Store, StoreResult};
use crate::domain::budget::{BudgetState, Grant, RateCeiling};

/// Attempts of one draw before it gives up for now (each lost to another replica's draw).
const CAS_ATTEMPTS: u32 = 8;

impl Store {
    /// Takes up to `want` requests from `client_key`'s budget (created full on first use).
    /// Returns the grant and the budget's current rate.
    pub async fn draw_rate_budget(
        &self,
        client_key: &str,
        ceiling: RateCeiling,
        want: u32,
    ) -> StoreResult<(Grant, f64)> {
        self.change_rate_budget(client_key, ceiling, |state, now| {
            state.take(ceiling, want, now)
        })
        .await
        .map(|(state, grant)| {
            (
                grant.unwrap_or(Grant {
                    requests: 0,
                    retry_in_ms: 5,
                }),
                state.rate_per_sec(),
            )
        })
    }

    /// John Deere refused `client_key` a request for the rate limit: every replica stops until
    /// `retry_after_ms` and paces slower for a while. Returns the new rate.
    pub async fn refuse_rate_budget(
        &self,
        client_key: &str,
        ceiling: RateCeiling,
        retry_after_ms: Option<i64>,
    ) -> StoreResult<f64> {
        self.change_rate_budget(client_key, ceiling, |state, now| {
            (state.refused(ceiling, retry_after_ms, now), ())
        })
        .await
        .map(|(state, _)| state.rate_per_sec())
    }

    /// Applies `change` to the stored budget with compare-and-swap. The result is `None` when
    /// every attempt lost to a concurrent change (the caller tries again later).
    ///
    /// Each attempt is a write transaction: on SQLite it queues for the one writer connection
    /// with the work ahead. (As autocommit statements on the shared pool, draws waited in
    /// SQLite's busy handler, which sleeps up to 100 ms at a time: draws of 300–800 ms in the
    /// sync benchmark, each leaving the requests waiting once the reserve was spent.)
    async fn change_rate_budget<T>(
        &self,
        client_key: &str,
        ceiling: RateCeiling,
        change: impl Fn(BudgetState, i64) -> (BudgetState, T),
    ) -> StoreResult<(BudgetState, Option<T>)> {
        let mut last = BudgetState::full(ceiling, now_ms());
        for _ in 0..CAS_ATTEMPTS {
            // Ahead of other work (see `super::ahead`): once the reserve is spent, every
            // request of the key waits for this change. (Queued as other work behind a
            // 500-grower sync's writes, a draw took about 40 ms, and a new grower's first
            // requests waited for it.)
            let mut tx = super::ahead(self.begin_write()).await?;
            let row = sqlx::query(
                "SELECT milli_tokens, milli_rate, updated_ms, blocked_until_ms, version FROM rate_budgets WHERE client_key = $1",
            )
            .bind(client_key)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                let full = BudgetState::full(ceiling, now_ms());
                sqlx::query(
                    "INSERT INTO rate_budgets (client_key, milli_tokens, milli_rate, updated_ms, blocked_until_ms, version) \
                     VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (client_key) DO NOTHING",
                )
                .bind(client_key)
                .bind(full.milli_tokens)
                .bind(full.milli_rate)
                .bind(full.updated_ms)
                .bind(full.blocked_until_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                continue;
            };
            let stored = BudgetState {
                milli_tokens: row.try_get("milli_tokens")?,
                milli_rate: row.try_get("milli_rate")?,
                updated_ms: row.try_get("updated_ms")?,
                blocked_until_ms: row.try_get("blocked_until_ms")?,
            };
            let version: i64 = row.try_get("version")?;
            let (next, result) = change(stored, now_ms());
            if next == stored {
                return Ok((next, Some(result)));
            }
            let swapped = sqlx::query(
                "UPDATE rate_budgets SET milli_tokens = $1, milli_rate = $2, updated_ms = $3, blocked_until_ms = $4, version = version + 1 \
                 WHERE client_key = $5 AND version = $6",
            )
            .bind(next.milli_tokens)
            .bind(next.milli_rate)
            .bind(next.updated_ms)
            .bind(next.blocked_until_ms)
            .bind(client_key)
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            if swapped == 1 {
                return Ok((next, Some(result)));
            }
            last = stored;
        }
        Ok((last, None))
    }
}
