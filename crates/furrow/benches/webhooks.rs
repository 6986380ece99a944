//! `cargo bench -p furrow --bench webhooks` — change-to-visible latency: from a change in the
//! simulator (a new field operation) to the operation being readable through furrow's API, and
//! to its `operationCreated` alert reaching a local receiver. The change travels John Deere's
//! way: the simulator's webhook delivery, furrow's receiver, its inbox, a fetch of the
//! operation (with the simulator's latency), the database, the alert outbox. Prints p50, p95
//! and max of both.
//!
//! Knobs: FURROW_BENCH_CHANGES (100), FURROW_BENCH_LATENCY_MS (50), FURROW_BENCH_DATABASE_URL
//! (default: SQLite in a temp dir).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use deere_sim::SimConfig;
use furrow::config::Settings;
use serde_json::{json, Value};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// When each operation's alert arrived, by furrow's operation id.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn alert_receiver(arrivals: Arrivals) -> String {
    async fn receive(State(arrivals): State<Arrivals>, body: String) -> &'static str {
        let now = Instant::now();
        if let Ok(alert) = serde_json::from_str::<Value>(&body) {
            if let Some(id) = alert["operationId"].as_str() {
                arrivals
                    .lock()
                    .unwrap()
                    .entry(id.to_string())
                    .or_insert(now);
            }
        }
        "ok"
    }
    let app = Router::new()
        .route("/alerts", post(receive))
        .with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms[rank.clamp(1, sorted_ms.len()) - 1]
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{what}: n={} p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        ms.last().copied().unwrap_or(0.0)
    );
}

#[tokio::main]
async fn main() {
    let changes: usize = env_or("FURROW_BENCH_CHANGES", 100);
    let latency_ms: u64 = env_or("FURROW_BENCH_LATENCY_MS", 50);
    let mut config = SimConfig::default();
    config.settings.latency_ms = latency_ms;
    let sim = deere_sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "furrow-bench-webhooks-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        database_url: std::env::var("FURROW_BENCH_DATABASE_URL").ok(),
        deere_auth_url: sim.issuer_url(),
        deere_stage_api_url: sim.platform_url().to_string(),
        deere_production_api_url: sim.platform_url().to_string(),
        // The default poll: latency must come from the webhook path, not from fast polling.
        health_check_interval_secs: 86_400,
        // The alert receiver listens on loopback.
        alert_allow_private_networks: true,
        ..Settings::default()
    };
    let app = furrow::app::start(settings).await.unwrap();
    furrow::api::auth::create_owner(&app.state.store, "bench@example.com", "bench-password")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = app.base_url();
    let token = http
        .post(format!("{base}/api/authenticate"))
        .json(&json!({"username": "bench@example.com", "password": "bench-password"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut r = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        if let Some(body) = body {
            r = r.json(&body);
        }
        r.send()
    };
    let arrivals: Arrivals = Arc::default();
    let receiver = alert_receiver(arrivals.clone()).await;
    let r = call(
        reqwest::Method::POST,
        "/services/alerts/api/alerts/webhooks".into(),
        Some(json!({"name": "bench", "url": receiver, "secret": "bench-secret", "events": ["operationCreated"]})),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let user: Value = call(
        reqwest::Method::POST,
        "/services/usermanagement/api/users".into(),
        Some(json!({"name": "grower001"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let user = user["id"].as_str().unwrap().to_string();
    let rt = sim
        .issue_tokens(
            "sim-client",
            "grower001",
            &["ag1", "ag2", "files", "offline_access"],
        )
        .unwrap()
        .refresh_token
        .unwrap();
    let r = call(
        reqwest::Method::POST,
        format!("/services/usermanagement/api/users/{user}/john-deere-credentials"),
        Some(json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": rt, "clientEnvironment": "STAGE"})),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    loop {
        let s: Value = call(
            reqwest::Method::GET,
            format!("/services/fields/api/users/{user}/fields/sync"),
            None,
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if s["state"] == "DONE" {
            assert_eq!(s["counts"]["webhooks"], "WEBHOOKS", "{s}");
            break;
        }
        assert_ne!(s["state"], "FAILED", "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin = format!("{}/__admin", sim.root_url());
    let world: Value = http
        .get(format!("{admin}/world"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fields: Vec<String> = world["growers"][0]["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["connectedApps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "sim-client")
        })
        .flat_map(|o| o["fieldIds"].as_array().unwrap().clone())
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    println!(
        "furrow webhook latency benchmark: {changes} new field operations, one at a time; \
         simulator latency {latency_ms} ms; engine poll {} ms (not used by the webhook path)",
        Settings::default().engine_poll_ms
    );

    let mut visible_ms = Vec::with_capacity(changes);
    let mut alert_ms = Vec::with_capacity(changes);
    for i in 0..changes {
        let field = &fields[i % fields.len()];
        let changed = Instant::now();
        let created: Value = http
            .post(format!("{admin}/fields/{field}/operations"))
            .json(&json!({"type": "seeding"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let provider_id = created["id"].as_str().unwrap();
        let id = furrow::store::grower_uuid(&user, &["operation", provider_id]);
        loop {
            let r = call(
                reqwest::Method::GET,
                format!("/services/operations/api/operations/{id}"),
                None,
            )
            .await
            .unwrap();
            if r.status().is_success() {
                visible_ms.push(changed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(60),
                "operation {provider_id} never became visible"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        loop {
            if let Some(at) = arrivals.lock().unwrap().get(&id) {
                alert_ms.push(at.duration_since(changed).as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(60),
                "alert for {provider_id} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    report("change -> readable in furrow's API", visible_ms);
    report("change -> operationCreated alert received", alert_ms);
    println!("goal: p95 < 1000 ms");
    app.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
