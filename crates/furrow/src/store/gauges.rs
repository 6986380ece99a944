//! What an operator watches, read at scrape time: counts by state and the age of the oldest
//! waiting item of each queue.

use sqlx::Row;

use super::{now_ms, Store, StoreResult};

#[derive(Debug, Default)]
pub struct Gauges {
    /// (status, count) of John Deere credentials.
    pub credentials: Vec<(String, i64)>,
    /// (kind, queued, due now) of jobs.
    pub jobs: Vec<(String, i64, i64)>,
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
        let jobs = sqlx::query(
            "SELECT kind, COUNT(*) AS n, SUM(CASE WHEN run_at_ms <= $1 THEN 1 ELSE 0 END) AS due \
             FROM jobs GROUP BY kind",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("kind")?,
                r.try_get("n")?,
                r.try_get::<Option<i64>, _>("due")?.unwrap_or(0),
            ))
        })
        .collect::<StoreResult<_>>()?;
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
