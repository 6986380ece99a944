//! `cargo bench -p furrow --bench sync` — the first full sync of a large account set and an
//! unchanged re-sync, against the simulator with latency and a per-client rate limit. Prints
//! wall time, requests, the ratio to the upstream bound, the re-sync's requests against the
//! minimum, and peak memory (VmHWM of this process, which also runs the simulator).
//!
//! Knobs: FURROW_BENCH_GROWERS (50), FURROW_BENCH_FIELDS (20), FURROW_BENCH_LATENCY_MS (50),
//! FURROW_BENCH_RATE (100 requests/s per client key), FURROW_BENCH_CONCURRENCY (16).

use std::time::{Duration, Instant};

use deere_sim::{SimConfig, WorldSize};
use furrow::config::Settings;
use serde_json::{json, Value};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let growers: u32 = env_or("FURROW_BENCH_GROWERS", 50);
    let fields: u32 = env_or("FURROW_BENCH_FIELDS", 20);
    let latency_ms: u64 = env_or("FURROW_BENCH_LATENCY_MS", 50);
    let rate: f64 = env_or("FURROW_BENCH_RATE", 100.0);
    let mut config = SimConfig {
        world: WorldSize {
            growers,
            connected_orgs_per_grower: 2,
            unconnected_orgs_per_grower: 0,
            clients_per_org: 1,
            farms_per_client: 2,
            fields_per_org: fields,
            operations_per_field: 4,
            files_per_org: 4,
            file_bytes: 16 * 1024,
        },
        ..SimConfig::default()
    };
    config.settings.latency_ms = latency_ms;
    config.settings.rate_limit_per_sec = Some(rate);
    let sim = deere_sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "furrow-bench-sync-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        database_url: std::env::var("FURROW_BENCH_DATABASE_URL").ok(),
        deere_auth_url: sim.issuer_url(),
        deere_stage_api_url: sim.platform_url().to_string(),
        deere_production_api_url: sim.platform_url().to_string(),
        engine_concurrency: env_or("FURROW_BENCH_CONCURRENCY", 16),
        engine_poll_ms: 50,
        health_check_interval_secs: 86_400,
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
    // The whole range of the seeded world's operations (2022–2024) is in scope.
    http.patch(format!("{base}/services/config/api/configs"))
        .bearer_auth(&token)
        .json(&json!({"operationsProcessingRange": 120}))
        .send()
        .await
        .unwrap();

    println!(
        "furrow sync benchmark: {growers} growers x 2 orgs x {fields} fields x 4 operations, 4 files per org; \
         simulator latency {latency_ms} ms, rate limit {rate} req/s per client key"
    );
    let started = Instant::now();
    let mut users = Vec::new();
    for g in 0..growers {
        let grower = format!("grower{:03}", g + 1);
        let user: Value = http
            .post(format!("{base}/services/usermanagement/api/users"))
            .bearer_auth(&token)
            .json(&json!({"name": grower}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user_id = user["id"].as_str().unwrap().to_string();
        let rt = sim
            .issue_tokens(
                "sim-client",
                &grower,
                &["ag1", "ag2", "files", "offline_access"],
            )
            .unwrap()
            .refresh_token
            .unwrap();
        let r = http
            .post(format!("{base}/services/usermanagement/api/users/{user_id}/john-deere-credentials"))
            .bearer_auth(&token)
            .json(&json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": rt, "clientEnvironment": "STAGE"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        users.push(user_id);
    }
    let done = |users: Vec<String>, after: Vec<Value>| {
        let http = http.clone();
        let base = base.clone();
        let token = token.clone();
        async move {
            let mut finished = Vec::new();
            loop {
                finished.clear();
                let mut all = true;
                for (i, u) in users.iter().enumerate() {
                    let s: Value = http
                        .get(format!("{base}/services/fields/api/users/{u}/fields/sync"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let fresh = s["state"] == "DONE"
                        && after.get(i).is_none_or(|a| *a != s["finishedTime"]);
                    all &= fresh;
                    finished.push(s["finishedTime"].clone());
                }
                if all {
                    return finished;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let first_finished = done(users.clone(), Vec::new()).await;
    let wall = started.elapsed().as_secs_f64();
    let log = sim.requests();
    let requests = log.len();
    let limited = log.iter().filter(|e| e.status == 429).count();
    let served = requests - limited;
    let rate_bound = served as f64 / rate;
    // Per credential, furrow reads sequentially: its chain is its share of the requests.
    let chain = served as f64 / growers as f64 * latency_ms as f64 / 1000.0;
    let bound = rate_bound.max(chain);
    println!(
        "first full sync:   {wall:.1} s wall, {served} requests served (+{limited} answered 429)"
    );
    println!(
        "upstream bound:    {bound:.1} s (rate {rate_bound:.1} s, per-credential latency chain {chain:.1} s); ratio {:.2} (goal <= 1.25)",
        wall / bound
    );

    // Unchanged re-sync of everything.
    let before = sim.requests().len();
    for u in &users {
        http.post(format!("{base}/services/fields/api/users/{u}/fields/sync"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }
    let resync_started = Instant::now();
    done(users.clone(), first_finished).await;
    let resync = sim.requests()[before..]
        .iter()
        .filter(|e| e.status != 429)
        .cloned()
        .collect::<Vec<_>>();
    let not_modified = resync.iter().filter(|e| e.status == 304).count();
    // One request per collection: organizations, and per org clients, farms, fields, files,
    // and per field its operations.
    let minimum = growers as usize * (1 + 2 * 4 + 2 * fields as usize);
    println!(
        "unchanged re-sync: {:.1} s, {} requests ({not_modified} answered 304) against a minimum of {minimum}: ratio {:.2} (goal 1.0)",
        resync_started.elapsed().as_secs_f64(),
        resync.len(),
        resync.len() as f64 / minimum as f64
    );
    // Anything read more than once in the re-sync is waste worth seeing.
    let mut seen = std::collections::HashMap::new();
    for e in &resync {
        *seen
            .entry((e.user.clone(), e.method.clone(), e.path.clone()))
            .or_insert(0usize) += 1;
    }
    let mut repeated: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    repeated.sort();
    println!(
        "re-sync repeats:   {} requests read more than once{}",
        repeated.len(),
        repeated
            .iter()
            .take(3)
            .map(|((u, m, p), n)| format!("; {n}x {m} {p} ({})", u.clone().unwrap_or_default()))
            .collect::<String>()
    );
    println!(
        "peak memory:       {:.0} MiB (furrow and the simulator in one process)",
        peak_rss_mib()
    );
    app.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
