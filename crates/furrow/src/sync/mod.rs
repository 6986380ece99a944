//! The background engine: claims due jobs from the database (leases), runs them with bounded
//! concurrency, and runs retention. Several replicas can run it against one database.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::app::AppState;
use crate::store::now_ms;

pub mod alerts;
pub mod credentials;
pub mod fields;
pub mod link;
pub mod organizations;

/// Runs until `stop` turns true.
pub async fn run_engine(state: AppState, mut stop: watch::Receiver<bool>) {
    let concurrency = state.settings.engine_concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let poll = Duration::from_millis(state.settings.engine_poll_ms.max(10));
    let mut last_retention = 0i64;
    let alert_http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("static HTTP client configuration");
    loop {
        if *stop.borrow() {
            break;
        }
        if now_ms() - last_retention > 3_600_000 {
            last_retention = now_ms();
            let cutoff = now_ms() - (state.settings.event_retention_days as i64) * 86_400_000;
            match state.store.delete_events_before(cutoff).await {
                Ok(n) if n > 0 => {
                    tracing::info!(deleted = n, "retention: old credential events removed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            }
        }
        let free = permits.available_permits() as i64;
        if free > 0 {
            let lease_until = now_ms() + (state.settings.lease_secs * 1000) as i64;
            match state
                .store
                .claim_jobs(&state.replica_id, lease_until, free)
                .await
            {
                Ok(jobs) => {
                    for job in jobs {
                        let permit = permits
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("semaphore is never closed");
                        let state = state.clone();
                        tokio::spawn(async move {
                            let outcome = match job.kind.as_str() {
                                "sync" => fields::run_job(&state, &job).await,
                                _ => credentials::maintain(&state, &job).await,
                            };
                            if let Err(e) = outcome {
                                tracing::warn!(job = %job.id, error = %e, "job failed; its lease will expire and it will run again");
                            }
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
            }
        }
        if let Err(e) = alerts::deliver_due(&state, &alert_http).await {
            tracing::warn!(error = %e, "claiming alert deliveries failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
}
