//! What an operator watches, read at scrape time: counts by state and the age of the oldest
//! waiting item of each queue.

use sqlx::Row;

use super::{now_ms, Store, StoreResult};

/// The families of job kinds that metrics count by: a credential's upkeep, its sync runs, their
/// parts (`part:{organization}/{resource}`) and machine-data processing (`opdata:{operation}`).
pub const JOB_FAMILIES: [&str; 4] = ["credential", "sync", "part", "opdata"];

/// The [`JOB_FAMILIES`] member of a job kind.
pub fn job_family(kind: &str) -> &'static str {
    match kind.split_once(':').map_or(kind, |(family, _)| family) {
        "sync" => "sync",
        "opdata" => "opdata",
        "part" => "part",
        _ => "credential",
    }
}

#[derive(Debug, Default)]
pub struct Gauges {
    /// (status, count) of John Deere credentials.
    pub credentials: Vec<(String, i64)>,
    /// (family, queued, due now) of jobs, for every [`JOB_FAMILIES`] member (0 when none).
    pub jobs: Vec<(&'static str, i64, i64)>,
    /// Alert deliveries waiting to be sent (first try or retry).
    pub alerts_pending: i64,
    /// Seconds the oldest of them has waited since its first planned attempt.
    pub alerts_oldest_age_secs: f64,
    /// John Deere events received and not yet applied.
    pub inbox_depth: i64,
    pub inbox_oldest_age_secs: f64,
}

impl Store {
    pub async fn gauges(&self) -> StoreResult<Gauges> {
        let now = now_ms();
        let age =
            |oldest_ms: Option<i64>| oldest_ms.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
        let credentials =
            sqlx::query("SELECT status, COUNT(*) AS n FROM jd_credentials GROUP BY status")
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
                .collect::<StoreResult<_>>()?;
        // By family, not by kind: kinds name an operation or an organization (`opdata:{id}`,
        // `part:{org}/fields`), one series each, never reset once their job was gone.
        // The CASE is `job_family` in SQL (one row per family, not per kind, comes back); the
        // test `jobs_are_counted_by_family` holds the two together.
        let mut counted = std::collections::HashMap::new();
        for row in sqlx::query(
            "SELECT CASE WHEN kind LIKE 'opdata:%' THEN 'opdata' WHEN kind LIKE 'part:%' THEN 'part' \
                    WHEN kind = 'sync' THEN 'sync' ELSE 'credential' END AS family, \
                    COUNT(*) AS n, SUM(CASE WHEN run_at_ms <= $1 THEN 1 ELSE 0 END) AS due \
             FROM jobs GROUP BY 1",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?
        {
            let due = row.try_get::<Option<i64>, _>("due")?.unwrap_or(0);
            counted.insert(row.try_get::<String, _>("family")?, (row.try_get("n")?, due));
        }
        // New operations queued for processing whose jobs are not made yet are machine-data
        // work waiting, due now.
        let pending: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM operation_data WHERE job_pending = 1")
                .fetch_one(self.pool())
                .await?
                .try_get("n")?;
        let jobs = JOB_FAMILIES
            .iter()
            .map(|family| {
                let (queued, due) = counted.get(*family).copied().unwrap_or((0, 0));
                let waiting = if *family == "opdata" { pending } else { 0 };
                (*family, queued + waiting, due + waiting)
            })
            .collect();
        // The first planned attempt of a delivery is its creation; a retry's is its due time.
        let alerts = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(next_attempt_ms) AS oldest FROM alert_deliveries WHERE state = 'pending'",
        )
        .fetch_one(self.pool())
        .await?;
        let inbox =
            sqlx::query("SELECT COUNT(*) AS n, MIN(received_ms) AS oldest FROM deere_inbox")
                .fetch_one(self.pool())
                .await?;
        Ok(Gauges {
            credentials,
            jobs,
            alerts_pending: alerts.try_get("n")?,
            alerts_oldest_age_secs: age(alerts.try_get("oldest")?),
            inbox_depth: inbox.try_get("n")?,
            inbox_oldest_age_secs: age(inbox.try_get("oldest")?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs of every family, one of them not due yet: counted by family, each family's count
    /// as `job_family` names it, and a family with no jobs reported as 0.
    async fn jobs_are_counted_by_family(store: &Store) {
        crate::store::test_credential(store, "c1").await;
        let kinds = [
            ("credential", 0),
            ("sync", 0),
            ("part:o1/fields", 0),
            ("part:o1/files", 0),
            ("opdata:op1", 0),
            ("opdata:op2", now_ms() + 3_600_000),
        ];
        let empty = store.gauges().await.unwrap().jobs;
        assert_eq!(
            empty,
            JOB_FAMILIES.iter().map(|f| (*f, 0, 0)).collect::<Vec<_>>()
        );
        for (n, (kind, run_at)) in kinds.iter().enumerate() {
            sqlx::query("INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts) VALUES ($1, $2, 'c1', $3, 0)")
                .bind(format!("j{n}"))
                .bind(*kind)
                .bind(*run_at)
                .execute(store.pool())
                .await
                .unwrap();
        }
        let jobs = store.gauges().await.unwrap().jobs;
        assert_eq!(
            jobs,
            [
                ("credential", 1, 1),
                ("sync", 1, 1),
                ("part", 2, 2),
                ("opdata", 2, 1)
            ]
        );
        for (kind, _) in kinds {
            let family = job_family(kind);
            assert!(
                jobs.iter().any(|(f, n, _)| *f == family && *n > 0),
                "{kind}"
            );
        }
    }

    crate::store::test_on_both_databases!(
        jobs_are_counted_by_family,
        jobs_are_counted_by_family_on_sqlite,
        jobs_are_counted_by_family_on_postgres
    );
}
