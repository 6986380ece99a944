//! `cargo bench -p furrow --bench credentials` — prints:
//! 1. GET credential throughput and p99 at 32 concurrent clients, against a static JSON
//!    endpoint of the same server (goal: ratio ≥ 0.5);
//! 2. token-refresh bookkeeping rate against the simulator with zero latency (goal ≥ 2,000
//!    credentials/s on SQLite).
//!
//! Loopback only. Knobs: FURROW_BENCH_SECS (default 5), FURROW_BENCH_CREDENTIALS (5000),
//! FURROW_BENCH_DATABASE_URL (default: SQLite in a temp dir), FURROW_BENCH_OBSERVE (`1`: as in
//! production with everything on — the JSON request log written, to a sink, and the
//! Prometheus recorder installed — to measure what they cost against a run without).

use std::sync::Arc;
use std::time::{Duration, Instant};

use furrow::config::Settings;
use furrow::store::{now_ms, CredentialRecord};
use serde_json::json;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct LoadResult {
    requests: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(
    url: String,
    token: Option<String>,
    clients: usize,
    duration: Duration,
) -> LoadResult {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let mut request = http.get(&url);
                if let Some(t) = &token {
                    request = request.bearer_auth(t);
                }
                let response = request.send().await.expect("request");
                assert!(response.status().is_success(), "{}", response.status());
                let _ = response.bytes().await.expect("body");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    LoadResult {
        requests: all.len(),
        per_sec: all.len() as f64 / duration.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

#[tokio::main]
async fn main() {
    let observe = env_or("FURROW_BENCH_OBSERVE", 0) == 1;
    if observe {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::sink)
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
            .init();
    }
    let secs: u64 = env_or("FURROW_BENCH_SECS", 5);
    let credentials: usize = env_or("FURROW_BENCH_CREDENTIALS", 5000);
    let sim = deere_sim::start(
        deere_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("furrow-bench-{}", uuid::Uuid::new_v4().simple()));
    let database_url = std::env::var("FURROW_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.join("furrow.db").display()));
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        database_url: Some(database_url.clone()),
        deere_auth_url: sim.issuer_url(),
        deere_stage_api_url: sim.platform_url().to_string(),
        deere_production_api_url: sim.platform_url().to_string(),
        engine_concurrency: env_or("FURROW_BENCH_CONCURRENCY", 64),
        engine_poll_ms: 20,
        metrics_listen: observe.then(|| "127.0.0.1:0".parse().unwrap()),
        ..Settings::default()
    };
    let app = furrow::app::start(settings).await.unwrap();
    let store = app.state.store.clone();
    furrow::api::auth::create_owner(&store, "bench@example.com", "bench-password")
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
        .json::<serde_json::Value>()
        .await
        .unwrap()["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let user: serde_json::Value = http
        .post(format!("{base}/services/usermanagement/api/users"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = user["id"].as_str().unwrap();
    let rt = sim
        .issue_tokens(
            "sim-client",
            "grower001",
            &["ag1", "ag2", "files", "offline_access"],
        )
        .unwrap()
        .refresh_token
        .unwrap();
    let created = http
        .post(format!("{base}/services/usermanagement/api/users/{user_id}/john-deere-credentials"))
        .bearer_auth(&token)
        .json(&json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": rt, "clientEnvironment": "STAGE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);

    println!(
        "furrow credentials benchmark ({}; {} s per load run, 32 clients; request log and metrics {})",
        furrow::config::redact_url(&database_url)
            .split('?')
            .next()
            .unwrap_or(""),
        secs,
        if observe { "on" } else { "off" }
    );
    let duration = Duration::from_secs(secs);
    let statik = load(format!("{base}/health"), None, 32, duration).await;
    let cred = load(
        format!("{base}/services/usermanagement/api/users/{user_id}/john-deere-credentials"),
        Some(token.clone()),
        32,
        duration,
    )
    .await;
    println!("static JSON  /health:              {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} requests)", statik.per_sec, statik.p50_ms, statik.p99_ms, statik.requests);
    println!("GET john-deere-credentials:        {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} requests)", cred.per_sec, cred.p50_ms, cred.p99_ms, cred.requests);
    println!(
        "ratio credential / static:         {:>8.2}  (goal >= 0.5)",
        cred.per_sec / statik.per_sec
    );

    // Refresh bookkeeping: N credentials all due at once; the engine refreshes each one
    // (token call, encrypted write in one transaction, reschedule).
    let state = &app.state;
    let mut ids = Vec::with_capacity(credentials);
    let far = now_ms() + 86_400_000;
    for i in 0..credentials {
        let uid = uuid::Uuid::new_v4().to_string();
        store
            .insert_user(
                &owner_id(&store).await,
                &uid,
                &furrow::store::UserWrite {
                    name: Some(format!("b{i}")),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let rt = sim
            .issue_tokens(
                "sim-client",
                if i % 2 == 0 { "grower001" } else { "grower002" },
                &["ag1", "ag2", "files", "offline_access"],
            )
            .unwrap()
            .refresh_token
            .unwrap();
        let record = CredentialRecord {
            id: uuid::Uuid::new_v4().to_string(),
            leaf_user_id: uid,
            client_key: "sim-client".into(),
            client_secret_enc: state.keyring.encrypt("sim-secret"),
            refresh_token_enc: state.keyring.encrypt(&rt),
            access_token_enc: None,
            access_expires_ms: None,
            scopes: "ag1 ag2 files offline_access".into(),
            environment: "STAGE".into(),
            status: "OK".into(),
            status_reason: None,
            created_at: furrow::store::leaf_time_now(),
            last_refresh_ms: None,
            last_check_ms: Some(now_ms()),
            version: 1,
        };
        ids.push(record.id.clone());
        store
            .replace_credential(&record, &[], far, &[])
            .await
            .unwrap();
    }
    // Only the token bookkeeping is measured: the data syncs these credentials also schedule
    // are pushed out of the way.
    sqlx::query("UPDATE jobs SET run_at_ms = $1 WHERE kind = 'sync'")
        .bind(far)
        .execute(store.pool())
        .await
        .unwrap();
    let token_calls_before = sim
        .requests()
        .iter()
        .filter(|e| e.path.ends_with("/v1/token"))
        .count();
    let started = Instant::now();
    let start_ms = now_ms();
    sqlx::query("UPDATE jobs SET run_at_ms = $1 WHERE kind = 'credential'")
        .bind(start_ms)
        .execute(store.pool())
        .await
        .unwrap();
    let ids = Arc::new(ids);
    loop {
        let done: i64 = sqlx::Row::try_get(
            &sqlx::query("SELECT COUNT(*) AS n FROM jd_credentials WHERE last_refresh_ms >= $1")
                .bind(start_ms)
                .fetch_one(store.pool())
                .await
                .unwrap(),
            "n",
        )
        .unwrap();
        if done as usize >= ids.len() {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            println!(
                "refresh bookkeeping: gave up after 300 s with {done} of {} refreshed",
                ids.len()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let token_calls = sim
        .requests()
        .iter()
        .filter(|e| e.path.ends_with("/v1/token"))
        .count()
        - token_calls_before;
    println!(
        "refresh bookkeeping:               {:>8.0} credentials/s  ({} credentials in {:.2} s, {} token calls; goal >= 2000/s)",
        ids.len() as f64 / elapsed.as_secs_f64(),
        ids.len(),
        elapsed.as_secs_f64(),
        token_calls
    );
    app.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn owner_id(store: &furrow::store::Store) -> String {
    store
        .owner_by_email("bench@example.com")
        .await
        .unwrap()
        .unwrap()
        .id
}
