//! `cargo bench -p furrow --bench machine_data` — machine data end to end: furrow exports an
//! operation from the simulator (one 307 and a pre-signed download over loopback), parses the
//! shapefile, writes the standard GeoJSON through the file store (the filtered one as byte ranges
//! of it), draws the maps and records the summary. Two cases:
//! - one harvest of FURROW_BENCH_POINTS (1,000,000) points;
//! - FURROW_BENCH_SMALL_OPS (100) operations of FURROW_BENCH_SMALL_POINTS (2,000) points,
//!   processed concurrently (FURROW_MACHINE_DATA_CONCURRENCY slots).
//!
//! Times come from furrow's own records (processing started → processed). The simulator makes
//! every export before the clock starts, so its synthesis is not counted. Peak memory is this
//! process's high-water mark (simulator included) from just before processing, and above the
//! memory in use then. FURROW_BENCH_DATABASE_URL picks the database (default: SQLite).

use std::time::Duration;

use chrono::DateTime;
use deere_sim::SimConfig;
use furrow::config::Settings;
use serde_json::{json, Value};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

struct Bench {
    http: reqwest::Client,
    base: String,
    token: String,
    admin: String,
    sim: deere_sim::RunningSim,
}

impl Bench {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let response = r.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}/{path}", self.admin));
        if let Some(body) = body {
            r = r.json(&body);
        }
        let response = r.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    /// A grower with one field and `ops` harvests of `points` points, their exports made now.
    async fn grower(&self, name: &str, ops: usize, points: usize) -> usize {
        self.admin(
            reqwest::Method::POST,
            "growers",
            Some(json!({"userName": name, "organizations": [{"name": name, "connectedTo": "sim-client", "fields": 1, "operationsPerField": 0, "files": 0}]})),
        )
        .await;
        let world = self.admin(reqwest::Method::GET, "world", None).await;
        let grower = world["growers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["userName"] == name)
            .unwrap()
            .clone();
        let field = grower["organizations"][0]["fieldIds"][0]
            .as_str()
            .unwrap()
            .to_string();
        let mut total = 0;
        for _ in 0..ops {
            let op = self
                .admin(
                    reqwest::Method::POST,
                    &format!("fields/{field}/operations"),
                    Some(json!({"type": "harvest", "points": points})),
                )
                .await;
            let truth = self
                .admin(
                    reqwest::Method::GET,
                    &format!(
                        "operations/{}/export?uom=ENGLISH",
                        op["id"].as_str().unwrap()
                    ),
                    None,
                )
                .await;
            total += truth["points"].as_u64().unwrap() as usize;
        }
        total
    }

    /// Connects `name` and waits until all `ops` operations are processed; returns the
    /// seconds from the first processing start to the last finish.
    async fn process(&self, name: &str, ops: usize) -> f64 {
        let user = self
            .call(
                reqwest::Method::POST,
                "/services/usermanagement/api/users",
                Some(json!({"name": name})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let rt = self
            .sim
            .issue_tokens(
                "sim-client",
                name,
                &["ag1", "ag2", "files", "offline_access"],
            )
            .unwrap()
            .refresh_token
            .unwrap();
        self.call(
            reqwest::Method::POST,
            &format!("/services/usermanagement/api/users/{user}/john-deere-credentials"),
            Some(json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": rt, "clientEnvironment": "STAGE"})),
        )
        .await;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let list = self
                .call(
                    reqwest::Method::GET,
                    &format!("/services/operations/api/operations?leafUserId={user}&size=100"),
                    None,
                )
                .await;
            let list = list.as_array().unwrap();
            if list.len() < ops {
                continue;
            }
            let mut spans = Vec::new();
            for op in list {
                let s = self
                    .call(
                        reqwest::Method::GET,
                        &format!(
                            "/services/operations/api/operations/{}/status",
                            op["id"].as_str().unwrap()
                        ),
                        None,
                    )
                    .await;
                match s["status"].as_str() {
                    Some("PROCESSED") => {}
                    Some("FAILED" | "NO_DATA") => panic!("processing failed: {s}"),
                    _ => break,
                }
                let started = s["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["message"].as_str().unwrap().starts_with("processing"))
                    .map(|e| e["time"].as_str().unwrap().to_string())
                    .unwrap();
                let time = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros();
                spans.push((time(&started), time(s["processedTime"].as_str().unwrap())));
            }
            if spans.len() == ops {
                let start = spans.iter().map(|s| s.0).min().unwrap();
                let end = spans.iter().map(|s| s.1).max().unwrap();
                return (end - start) as f64 / 1e6;
            }
        }
    }
}

#[tokio::main]
async fn main() {
    // RUST_LOG=furrow=info shows each operation's phases (export, processing, images).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let points: usize = env_or("FURROW_BENCH_POINTS", 1_000_000);
    let small_ops: usize = env_or("FURROW_BENCH_SMALL_OPS", 100);
    let small_points: usize = env_or("FURROW_BENCH_SMALL_POINTS", 2_000);
    let mut config = SimConfig::default();
    config.settings.export_polls = 0;
    let sim = deere_sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir =
        std::env::temp_dir().join(format!("furrow-bench-md-{}", uuid::Uuid::new_v4().simple()));
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        database_url: std::env::var("FURROW_BENCH_DATABASE_URL").ok(),
        deere_auth_url: sim.issuer_url(),
        deere_stage_api_url: sim.platform_url().to_string(),
        deere_production_api_url: sim.platform_url().to_string(),
        health_check_interval_secs: 86_400,
        machine_data_concurrency: env_or("FURROW_MACHINE_DATA_CONCURRENCY", 2),
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
    let bench = Bench {
        http,
        base: base.to_string(),
        token,
        admin: format!("{}/__admin", sim.root_url()),
        sim,
    };
    bench
        .call(
            reqwest::Method::PATCH,
            "/services/config/api/configs",
            Some(json!({"operationsImageCreation": true, "operationsProcessingRange": 120})),
        )
        .await;

    println!("making the simulator's exports (not timed)...");
    let big_points = bench.grower("bigharvest", 1, points).await;
    let small_total = bench.grower("smallops", small_ops, small_points).await;

    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_mib("VmRSS:");
    let seconds = bench.process("bigharvest", 1).await;
    let peak = status_mib("VmHWM:");
    println!(
        "one harvest of {big_points} points: {seconds:.2} s end to end, {:.0} points/s (goal ≥ 500,000); \
         peak memory {peak:.0} MiB, {:.0} MiB above the {before:.0} MiB in use before (goal < 300 MiB)",
        big_points as f64 / seconds,
        peak - before
    );

    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_mib("VmRSS:");
    let seconds = bench.process("smallops", small_ops).await;
    let peak = status_mib("VmHWM:");
    println!(
        "{small_ops} operations of {small_points} points ({small_total} points): {seconds:.2} s, {:.0} points/s, \
         {:.1} operations/s; peak memory {peak:.0} MiB ({:.0} MiB above {before:.0} MiB)",
        small_total as f64 / seconds,
        small_ops as f64 / seconds,
        peak - before
    );
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
