//! Prometheus metrics. Counters and histograms are recorded through the `metrics` facade where
//! things happen (the `deere` client records its own requests); gauges of queues and states are
//! read from the database at scrape time, so every replica reports the same shared state. The
//! exporter listens on its own address (`FURROW_METRICS_LISTEN`), never on the public API port.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::AppState;

/// Latency buckets (seconds) for furrow's answers and John Deere's.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The process's recorder: installed once, shared by every server the process starts.
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .as_ref()
}

/// Serves `/metrics` on `addr` until `stopped` turns true.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(state);
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    // Install now, so that counters recorded before the first scrape are kept.
    handle();
    Ok((bound, server))
}

async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let Some(handle) = handle() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder").into_response();
    };
    match state.store.gauges().await {
        Ok(g) => {
            for (status, n) in g.credentials {
                gauge!("furrow_credentials", "status" => status).set(n as f64);
            }
            for (kind, queued, due) in g.jobs {
                gauge!("furrow_jobs_queued", "kind" => kind).set(queued as f64);
                gauge!("furrow_jobs_due", "kind" => kind).set(due as f64);
            }
            gauge!("furrow_alert_outbox_depth").set(g.alerts_pending as f64);
            gauge!("furrow_alert_outbox_oldest_age_seconds").set(g.alerts_oldest_age_secs);
            gauge!("furrow_deere_inbox_depth").set(g.inbox_depth as f64);
            gauge!("furrow_deere_inbox_oldest_age_seconds").set(g.inbox_oldest_age_secs);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: database gauges not read"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// One answer of furrow's API, by route template.
pub fn http_answered(route: &str, method: &str, status: u16, latency: Duration) {
    let (route, method) = (route.to_string(), method.to_string());
    counter!("furrow_http_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    histogram!("furrow_http_request_duration_seconds", "route" => route)
        .record(latency.as_secs_f64());
}

/// An alert delivery attempt: `delivered` or `failed` (it is retried).
pub fn alert_delivery(outcome: &'static str) {
    counter!("furrow_alert_deliveries_total", "outcome" => outcome).increment(1);
}

/// A token refresh: `ok`, or the failure's cause.
pub fn token_refresh(outcome: &'static str) {
    counter!("furrow_token_refreshes_total", "outcome" => outcome).increment(1);
}

/// A job claimed from a replica whose lease ran out (it died or stalled; a replica that shuts
/// down releases its leases, which is not counted). `kind` is `sync`, `part`, `opdata` or
/// `credential`.
pub fn lease_takeover(kind: &str) {
    counter!("furrow_job_lease_takeovers_total", "kind" => crate::store::job_family(kind))
        .increment(1);
}

/// A John Deere event delivery to furrow: `accepted` or `refused`.
pub fn deere_event(outcome: &'static str) {
    counter!("furrow_deere_events_total", "outcome" => outcome).increment(1);
}

/// A finished part of a sync run (an organization's `fields` or `files`): `done` or `failed`
/// (after its retries), and how long its last attempt took.
pub fn sync_part(resource: &str, outcome: &'static str, took: Duration) {
    counter!("furrow_sync_parts_total", "resource" => resource.to_string(), "outcome" => outcome)
        .increment(1);
    histogram!("furrow_sync_part_duration_seconds", "resource" => resource.to_string())
        .record(took.as_secs_f64());
}

/// Items a sync upserted, by kind (every item read from John Deere is upserted: written, or
/// left as it was when its content hash is unchanged).
pub fn sync_items(kind: &'static str, count: usize) {
    if count > 0 {
        counter!("furrow_sync_items_total", "kind" => kind).increment(count as u64);
    }
}
