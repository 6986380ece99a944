//! A sync run's parts: one-shot jobs sharing one account's organizations and resources between
//! replicas, and the bookkeeping that tells when the run is complete.

use sqlx::Row;

use super::{leaf_time_now, now_ms, opt_string, ClaimedJob, Store, StoreResult, SyncStatus};

/// Job kinds of parts start with this.
pub const PART_JOB_PREFIX: &str = "part:";

#[derive(Debug, Clone)]
pub struct SyncPart {
    pub part: String,
    pub run_id: String,
    /// `PENDING` or `DONE`.
    pub state: String,
    /// The part's counts, a JSON object.
    pub counts: String,
    pub error: Option<String>,
    /// While it runs: items and requests so far (JSON, see [`Store::set_part_progress`]).
    pub progress: Option<String>,
}

fn part_from(r: &sqlx::any::AnyRow) -> StoreResult<SyncPart> {
    Ok(SyncPart {
        part: r.try_get("part")?,
        run_id: r.try_get("run_id")?,
        state: r.try_get("state")?,
        counts: r.try_get("counts")?,
        error: opt_string(r, "error")?,
        progress: opt_string(r, "progress")?,
    })
}

impl Store {
    /// Starts a run: the credential's earlier parts and their jobs are replaced by `parts`, each
    /// PENDING with a job due now, and the user's sync status becomes `status` — one transaction.
    /// With `lease_first_fields` (a replica and a lease end), the first fields part's job is
    /// inserted leased to that replica and returned, for the run to go on with it at once
    /// rather than cost a new grower a claim before its first data (asked for only while no job
    /// that a claim ranks before parts waits: see [`Store::others_waiting_before_parts`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_sync_parts(
        &self,
        credential_id: &str,
        user: &str,
        run_id: &str,
        parts: &[String],
        run_counts: &str,
        status: &SyncStatus,
        lease_first_fields: Option<(&str, i64)>,
    ) -> StoreResult<Option<ClaimedJob>> {
        let first_fields = parts.iter().position(|p| p.ends_with("/fields"));
        let request_id = crate::request_context::current();
        super::retry_conflicts(|| async {
            let mut tx = self.begin_write().await?;
            sqlx::query("DELETE FROM jobs WHERE credential_id = $1 AND machine_data = 0 AND kind LIKE 'part:%'")
                .bind(credential_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sync_parts WHERE credential_id = $1")
                .bind(credential_id)
                .execute(&mut *tx)
                .await?;
            // The run's own counts (organizations, webhooks), done from the start.
            sqlx::query(
                "INSERT INTO sync_parts (credential_id, part, run_id, state, counts) VALUES ($1, '_run', $2, 'DONE', $3)",
            )
            .bind(credential_id)
            .bind(run_id)
            .bind(run_counts)
            .execute(&mut *tx)
            .await?;
            let mut leased = None;
            for (n, part) in parts.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO sync_parts (credential_id, part, run_id, state, counts) VALUES ($1, $2, $3, 'PENDING', '{}')",
                )
                .bind(credential_id)
                .bind(part)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                let id = uuid::Uuid::new_v4().to_string();
                let kind = format!("{PART_JOB_PREFIX}{part}");
                let lease = lease_first_fields.filter(|_| Some(n) == first_fields);
                sqlx::query(
                    "INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts, request_id, lease_owner, lease_until_ms) \
                     VALUES ($1, $2, $3, $4, 0, $5, $6, $7)",
                )
                .bind(id.as_str())
                .bind(kind.as_str())
                .bind(credential_id)
                .bind(now_ms())
                .bind(request_id.clone())
                .bind(lease.map(|(owner, _)| owner.to_string()))
                .bind(lease.map(|(_, until)| until))
                .execute(&mut *tx)
                .await?;
                if lease.is_some() {
                    leased = Some(ClaimedJob {
                        id,
                        kind,
                        credential_id: credential_id.to_string(),
                        attempts: 0,
                        request_id: request_id.clone(),
                        taken_over: false,
                    });
                }
            }
            super::fields::sync_status_in(&mut tx, user, status).await?;
            tx.commit().await?;
            Ok(leased)
        })
        .await
    }

    /// The credential's current run's parts (not the run's own record), in name order.
    pub async fn sync_parts(&self, credential_id: &str) -> StoreResult<Vec<SyncPart>> {
        sqlx::query(
            "SELECT part, run_id, state, counts, error, progress FROM sync_parts \
             WHERE credential_id = $1 AND part <> '_run' ORDER BY part",
        )
        .bind(credential_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(part_from)
        .collect()
    }

    pub async fn sync_part(
        &self,
        credential_id: &str,
        part: &str,
    ) -> StoreResult<Option<SyncPart>> {
        let row = sqlx::query(
            "SELECT part, run_id, state, counts, error, progress FROM sync_parts WHERE credential_id = $1 AND part = $2",
        )
        .bind(credential_id)
        .bind(part)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(part_from).transpose()
    }

    /// Records how far a running part of run `run_id` has got (a JSON object). A part of a
    /// replaced run, or one already finished, is left alone.
    pub async fn set_part_progress(
        &self,
        credential_id: &str,
        part: &str,
        run_id: &str,
        progress: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sync_parts SET progress = $1 \
             WHERE credential_id = $2 AND part = $3 AND run_id = $4 AND state = 'PENDING'",
        )
        .bind(progress)
        .bind(credential_id)
        .bind(part)
        .bind(run_id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    /// The credential's part jobs leased right now whose id sorts before `job_id`.
    pub async fn parts_leased_before(&self, credential_id: &str, job_id: &str) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE credential_id = $1 AND machine_data = 0 \
             AND kind LIKE 'part:%' AND lease_until_ms >= $2 AND id < $3",
        )
        .bind(credential_id)
        .bind(now_ms())
        .bind(job_id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Records a finished part of run `run_id` (its counts, error and last progress) and removes
    /// its job. When it was the run's last, `finish` turns every part's counts into the final
    /// sync status, written in the same transaction. A part of a replaced run changes nothing.
    pub async fn finish_sync_part(
        &self,
        credential_id: &str,
        user: &str,
        part: &SyncPart,
        job_id: &str,
        done_by: &str,
        finish: impl Fn(&[SyncPart]) -> (String, Option<String>),
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Serialises the run's last parts: each sees the others' committed state.
        sqlx::query("UPDATE sync_status SET state = state WHERE leaf_user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(
            "UPDATE sync_parts SET state = 'DONE', counts = $1, error = $2, done_by = $3, \
             progress = $4 WHERE credential_id = $5 AND part = $6 AND run_id = $7",
        )
        .bind(&part.counts)
        .bind(part.error.clone())
        .bind(done_by)
        .bind(part.progress.clone())
        .bind(credential_id)
        .bind(&part.part)
        .bind(&part.run_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            let rows = sqlx::query(
                "SELECT part, run_id, state, counts, error, progress FROM sync_parts WHERE credential_id = $1 AND run_id = $2",
            )
            .bind(credential_id)
            .bind(&part.run_id)
            .fetch_all(&mut *tx)
            .await?;
            let parts = rows
                .iter()
                .map(part_from)
                .collect::<StoreResult<Vec<_>>>()?;
            if parts.iter().all(|p| p.state == "DONE") {
                let (counts, error) = finish(&parts);
                sqlx::query(
                    "UPDATE sync_status SET state = $1, finished_at = $2, counts = $3, last_error = $4 WHERE leaf_user_id = $5",
                )
                .bind(if error.is_some() { "FAILED" } else { "DONE" })
                .bind(leaf_time_now())
                .bind(counts)
                .bind(error)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
