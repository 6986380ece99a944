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
    /// The API request that queued or woke it.
    pub request_id: Option<String>,
    /// Claimed from another replica whose lease had run out (it died or stalled).
    pub taken_over: bool,
}

impl Store {
    /// Claims up to `limit` due jobs for `owner` (a replica id) until `lease_until_ms`, in one
    /// statement. The lease condition sits in the outer WHERE so that, when two replicas race
    /// for a row, the second one's re-check after the first commits excludes it.
    /// `machine_data` picks the machine-data processing jobs (which have slots of their own,
    /// so that long exports never hold up credentials and syncs), or every other kind.
    /// Fair share: jobs of credentials with the fewest jobs running go first; then a
    /// credential's own jobs (which start its sync) before sync parts; then credentials with the
    /// least left to do (fewest jobs: a small account's two parts before a large one's dozen);
    /// then the longest due. A grower connected while large accounts sync does not queue behind
    /// all of their parts.
    pub async fn claim_jobs(
        &self,
        owner: &str,
        lease_until_ms: i64,
        limit: i64,
        machine_data: bool,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now = now_ms();
        let kind = if machine_data {
            "j.kind LIKE 'opdata:%'"
        } else {
            "j.kind NOT LIKE 'opdata:%'"
        };
        let rows = sqlx::query(&format!(
            "UPDATE jobs SET lease_owner = $1, lease_until_ms = $2, woken = 0, \
             previous_lease_owner = lease_owner \
             WHERE id IN (SELECT j.id FROM jobs j WHERE j.run_at_ms <= $3 AND {kind} \
                          AND (j.lease_until_ms IS NULL OR j.lease_until_ms < $3) \
                          ORDER BY (SELECT COUNT(*) FROM jobs r WHERE r.credential_id = j.credential_id \
                                    AND r.lease_until_ms >= $3), \
                                   CASE WHEN j.kind LIKE 'part:%' THEN 1 ELSE 0 END, \
                                   (SELECT COUNT(*) FROM jobs p WHERE p.credential_id = j.credential_id), \
                                   j.run_at_ms LIMIT $4) \
             AND run_at_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms < $3) \
             RETURNING id, kind, credential_id, attempts, request_id, previous_lease_owner",
        ))
        .bind(owner)
        .bind(lease_until_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedJob {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    credential_id: row.try_get("credential_id")?,
                    attempts: row.try_get("attempts")?,
                    request_id: super::opt_string(row, "request_id")?,
                    taken_over: super::opt_string(row, "previous_lease_owner")?.is_some(),
                })
            })
            .collect()
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
            "UPDATE jobs SET run_at_ms = CASE WHEN woken <> 0 THEN run_at_ms ELSE $1 END, attempts = $2, \
             request_id = CASE WHEN woken <> 0 THEN request_id ELSE NULL END, \
             last_error = $3, lease_owner = NULL, lease_until_ms = NULL, woken = 0 \
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

    /// Gives up every lease `owner` holds (a replica shutting down, its jobs stopped): the
    /// jobs are due again at once for any replica. Returns how many were released.
    pub async fn release_leases(&self, owner: &str) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    /// Makes one of a credential's jobs due now (a manual sync). A job running under a lease
    /// finishes first and then runs again at once (its reschedule keeps a wake-up that came
    /// in while it ran: the change that prompted it may have come after the run read it).
    pub async fn wake_job(&self, credential_id: &str, kind: &str) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET run_at_ms = $1, woken = 1, request_id = $4 WHERE credential_id = $2 AND kind = $3",
        )
        .bind(now_ms())
        .bind(credential_id)
        .bind(kind)
        .bind(crate::request_context::current())
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
