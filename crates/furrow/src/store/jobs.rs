//! Durable jobs with leases: a replica claims a due job by a conditional update, so at most one
//! replica runs a job at a time; a crashed replica's lease simply runs out.

use sqlx::Row;

use super::{now_ms, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    pub kind: String,
    pub credential_id: String,
    pub attempts: i64,
}

impl Store {
    /// Claims up to `limit` due jobs for `owner` (a replica id) until `lease_until_ms`.
    pub async fn claim_jobs(
        &self,
        owner: &str,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now = now_ms();
        let candidates = sqlx::query(
            "SELECT id, kind, credential_id, attempts FROM jobs \
             WHERE run_at_ms <= $1 AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
             ORDER BY run_at_ms LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut claimed = Vec::new();
        for row in candidates {
            let id: String = row.try_get("id")?;
            // Only one replica's update can match: the lease condition is re-checked atomically.
            let r = sqlx::query(
                "UPDATE jobs SET lease_owner = $1, lease_until_ms = $2 \
                 WHERE id = $3 AND run_at_ms <= $4 AND (lease_until_ms IS NULL OR lease_until_ms < $4)",
            )
            .bind(owner)
            .bind(lease_until_ms)
            .bind(&id)
            .bind(now)
            .execute(self.pool())
            .await?;
            if r.rows_affected() == 1 {
                claimed.push(ClaimedJob {
                    id,
                    kind: row.try_get("kind")?,
                    credential_id: row.try_get("credential_id")?,
                    attempts: row.try_get("attempts")?,
                });
            }
        }
        Ok(claimed)
    }

    /// Releases a job and schedules its next run (only if this replica still holds it).
    pub async fn reschedule_job(
        &self,
        id: &str,
        owner: &str,
        run_at_ms: i64,
        attempts: i64,
        last_error: Option<&str>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET run_at_ms = $1, attempts = $2, last_error = $3, lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = $4 AND lease_owner = $5",
        )
        .bind(run_at_ms)
        .bind(attempts)
        .bind(last_error.map(str::to_string))
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Moves a credential's job to run now (e.g. after an API call asks for fresh data).
    pub async fn wake_credential_job(&self, credential_id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET run_at_ms = $1 WHERE credential_id = $2")
            .bind(now_ms())
            .bind(credential_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
