//! Prometheus metrics on their own address: after a sync that met a 429 and an alert receiver
//! that is down, the scrape shows both, with furrow's answers and the database's gauges. The
//! recorder is process-wide, so both databases run one after the other in one test and every
//! check is on what changed between two scrapes.

mod common;

use std::time::Duration;

use common::{spawn_with, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SCOPES: &[&str] = &["ag1", "ag2", "files", "offline_access"];

/// The sum of the samples of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let addr = app.furrow.metrics_addr.expect("metrics listen");
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

async fn scenario(db: Db) {
    let app = spawn_with(db, |s| {
        s.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        s.alert_allow_private_networks = true;
    })
    .await;
    // Not on the public port.
    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let before = scrape(&app).await;

    // An alert receiver that is down: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (status, _) = app
        .call(
            Method::POST,
            "/services/alerts/api/alerts/webhooks",
            Some(
                json!({"events": ["fieldCreated"], "name": "down", "secret": "s3cret-value",
                        "url": format!("http://{closed}/hook")}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // John Deere refuses one fields read with a 429 (retried after a second).
    app.admin(
        Method::POST,
        "faults",
        Some(json!({"pathContains": "/fields", "times": 1,
                    "kind": {"type": "rateLimit", "retryAfter": 1}})),
    )
    .await;
    let user = app.create_user("measured").await;
    let rt = app.grower_refresh_token("grower001", SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.0,
        StatusCode::CREATED
    );
    let sync = app.wait_for_sync_done(&user).await;
    assert_eq!(sync["state"], "DONE", "{sync}");

    let delta = |after: &str, name: &str, labels: &[(&str, &str)]| {
        sample(after, name, labels) - sample(&before, name, labels)
    };
    let mut after = String::new();
    for _ in 0..100 {
        after = scrape(&app).await;
        if delta(
            &after,
            "furrow_alert_deliveries_total",
            &[("outcome", "failed")],
        ) >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        delta(
            &after,
            "furrow_alert_deliveries_total",
            &[("outcome", "failed")]
        ) >= 1.0,
        "{after}"
    );
    assert_eq!(
        delta(
            &after,
            "deere_client_requests_total",
            &[("kind", "organizations/{id}/fields"), ("status", "429")]
        ),
        1.0,
        "{after}"
    );
    assert!(
        delta(
            &after,
            "deere_client_requests_total",
            &[("kind", "organizations/{id}/fields"), ("status", "200")]
        ) >= 1.0
    );
    assert!(
        delta(
            &after,
            "deere_client_requests_total",
            &[("kind", "token"), ("status", "200")]
        ) >= 1.0
    );
    assert!(
        delta(
            &after,
            "furrow_http_requests_total",
            &[
                (
                    "route",
                    "/services/usermanagement/api/users/{id}/john-deere-credentials"
                ),
                ("method", "POST"),
                ("status", "201")
            ]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        delta(
            &after,
            "furrow_sync_parts_total",
            &[("resource", "fields"), ("outcome", "done")]
        ) >= 1.0
    );
    assert!(
        delta(
            &after,
            "deere_client_request_duration_seconds_count",
            &[("kind", "token")]
        ) >= 1.0
    );
    // Parts by outcome and duration, and the items they upserted.
    assert!(
        delta(
            &after,
            "furrow_sync_part_duration_seconds_count",
            &[("resource", "fields")]
        ) >= 1.0,
        "{after}"
    );
    assert!(delta(&after, "furrow_sync_items_total", &[("kind", "fields")]) >= 1.0);
    assert!(delta(&after, "furrow_sync_items_total", &[("kind", "boundaries")]) >= 1.0);
    // The 429's Retry-After (1 s) was waited out: time on the rate budget.
    assert!(
        delta(&after, "deere_client_rate_limit_wait_seconds_sum", &[]) >= 1.0,
        "{after}"
    );
    // A replica that died holding the sync job's lease: its lease runs out and this one takes
    // the job over, which is counted.
    sqlx::query(
        "UPDATE jobs SET lease_owner = 'a-replica-that-died', lease_until_ms = 1, run_at_ms = 0 \
         WHERE kind = 'sync'",
    )
    .execute(app.furrow.state.store.pool())
    .await
    .unwrap();
    app.furrow.state.wake.notify();
    for _ in 0..100 {
        after = scrape(&app).await;
        if delta(
            &after,
            "furrow_job_lease_takeovers_total",
            &[("kind", "sync")],
        ) >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        delta(
            &after,
            "furrow_job_lease_takeovers_total",
            &[("kind", "sync")]
        ),
        1.0,
        "{after}"
    );
    // Gauges come from this database at scrape time.
    assert_eq!(
        sample(&after, "furrow_credentials", &[("status", "OK")]),
        1.0,
        "{after}"
    );
    assert!(sample(&after, "furrow_jobs_queued", &[("kind", "credential")]) >= 1.0);
    // Jobs by family, every family shown (0 when none is queued), never one series per
    // operation or organization.
    for family in ["credential", "sync", "part", "opdata"] {
        for gauge in ["furrow_jobs_queued", "furrow_jobs_due"] {
            assert!(
                after.contains(&format!("{gauge}{{kind=\"{family}\"}}")),
                "{gauge} {family}: {after}"
            );
        }
    }
    assert!(after.lines().all(|l| !l.starts_with("furrow_jobs_")
        || !(l.contains("kind=\"opdata:") || l.contains("kind=\"part:"))));
    // No secret in any series.
    for secret in ["s3cret-value", rt.as_str()] {
        assert!(!after.contains(secret));
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_429s_failed_alerts_answers_and_gauges() {
    scenario(Db::Sqlite).await;
    scenario(Db::Postgres).await;
}
