//! `cargo bench -p furrow --bench sync` — the first full sync of a large account set and an
//! unchanged re-sync, against the simulator with latency and a per-client rate limit. Prints
//! wall time, requests by kind against the protocol's minimum, the ratio to the upstream bound
//! John Deere sets (its rate limit over that minimum, or the dependency depth times its
//! latency), 429s, the re-sync's requests against the minimum, CPU time and peak memory
//! (VmHWM) of furrow and of the simulator apart, and furrow's disk writes: the simulator runs
//! in a process of its own (this binary run again with FURROW_BENCH_SIMULATOR set), as John
//! Deere is a system of its own.
//! In this process furrow has a tokio runtime of its own and the benchmark's client a thread of
//! its own; it prints how long a task made ready on furrow's runtime waits for a worker.
//!
//! Knobs: FURROW_BENCH_GROWERS (50), FURROW_BENCH_FIELDS (20), FURROW_BENCH_LATENCY_MS (50),
//! FURROW_BENCH_RATE (100 requests/s per client key), FURROW_BENCH_CONCURRENCY (furrow's default),
//! FURROW_BENCH_PACED (1; 0: furrow is not told the rate limit), FURROW_BENCH_TOLD_RATE (the
//! rate furrow is told, FURROW_BENCH_RATE unless set), FURROW_BENCH_READS_PER_PART
//! (furrow's default), FURROW_BENCH_DATABASE_URL, FURROW_BENCH_AHEAD_CONNECTIONS and
//! FURROW_BENCH_BULK_CONNECTIONS (furrow's defaults).

use std::time::{Duration, Instant};

use deere_sim::{SimConfig, WorldSize};
use furrow::config::Settings;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sqlx::Row;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) a process (`self` or a pid) has used: `/proc/{process}/stat`
/// fields 14 and 15, in clock ticks of 1/100 s (Linux's USER_HZ).
fn cpu_seconds(process: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{process}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// CPU seconds each of this process's threads has used, by thread id, with its name.
fn thread_cpu_seconds() -> std::collections::BTreeMap<String, (String, f64)> {
    let mut threads = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let tid = task.file_name().to_string_lossy().to_string();
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let cpu = cpu_seconds(&format!("self/task/{tid}"));
        threads.insert(tid, (name.trim().to_string(), cpu));
    }
    threads
}

/// The number after `key` in `/proc/{process}/{file}` (lines such as `VmHWM:  1234 kB`), or 0.
fn proc_figure(process: &str, file: &str, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{process}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// Bytes a process has caused to be written to disk so far: on SQLite, the write-ahead log and
/// the checkpoints' copies of it.
fn disk_write_bytes(process: &str) -> f64 {
    proc_figure(process, "io", "write_bytes:")
}

/// A process's peak resident memory (VmHWM, in KiB there).
fn peak_rss_mib(process: &str) -> f64 {
    proc_figure(process, "status", "VmHWM:") / 1024.0
}

/// Requests a first sync needs, by kind of John Deere path (the rest — tokens, event
/// subscriptions, machine-data exports — are counted and shown, not held to the minimum).
const SYNC_KINDS: [&str; 8] = [
    "organizations",
    "clients",
    "farms",
    "fields",
    "boundaries",
    "fieldOperations",
    "files",
    "file download",
];

/// The engine's slots in use during the first sync, by kind of job (averages so far).
static SLOTS: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Credentials the benchmark posts at once.
const CONNECTS_AT_ONCE: usize = 32;
/// Small growers connected one after another before the big sync, for the time alone.
const ALONE_SAMPLES: usize = 3;

/// Token, then organizations, then an organization's fields, then a field's boundaries or
/// operations: the longest chain of requests each needing the one before.
const DEPENDENCY_DEPTH: u32 = 4;

/// What a John Deere request reads, from its path.
fn kind_of(path: &str) -> &'static str {
    let path = path.split(['?', ';']).next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let last = segments.last().copied().unwrap_or("");
    if path.contains("token") || path.contains("oauth") {
        "token"
    } else if path.contains("eventSubscriptions") || path.contains("eventTypes") {
        "event subscriptions"
    } else if path.contains("fieldOps")
        || path.contains("measurementTypes")
        || path.contains("presigned")
    {
        "machine data"
    } else if segments.iter().rev().nth(1) == Some(&"files") {
        "file download"
    } else {
        match last {
            "organizations" => "organizations",
            "clients" => "clients",
            "farms" => "farms",
            "fields" => "fields",
            "boundaries" => "boundaries",
            "fieldOperations" | "fieldoperations" => "fieldOperations",
            "files" => "files",
            _ => "other",
        }
    }
}

/// Means of the histograms that say where furrow's time went, from a Prometheus scrape (over
/// the whole run so far: the small growers' syncs are in them too).
fn time_per_request(scrape: &str) -> String {
    // Over the series of `name` whose labels include `label` (all of them for "").
    let total = |name: &str, suffix: &str, label: &str| -> f64 {
        scrape
            .lines()
            .filter(|l| {
                l.starts_with(name)
                    && l[name.len()..].starts_with(suffix)
                    && matches!(
                        l.as_bytes().get(name.len() + suffix.len()),
                        Some(b' ' | b'{')
                    )
                    && l.contains(label)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mean_of = |name: &str, label: &str| {
        let (sum, count) = (total(name, "_sum", label), total(name, "_count", label));
        format!("{:.1} ms over {count}", 1000.0 * sum / count.max(1.0))
    };
    let mean = |name: &str| mean_of(name, "");
    format!(
        "waiting for the rate budget {} (its draws from the database {}), for the database's writer {} (work ahead {}, giving way {}, other work {}), John Deere's answers {}, sync parts {}",
        mean("furrow_rate_budget_wait_seconds"),
        mean("furrow_rate_budget_draw_seconds"),
        mean("furrow_db_write_wait_seconds"),
        mean_of("furrow_db_write_wait_seconds", "work=\"ahead\""),
        mean_of("furrow_db_write_wait_seconds", "work=\"giving_way\""),
        mean_of("furrow_db_write_wait_seconds", "work=\"other\""),
        mean("deere_client_request_duration_seconds"),
        mean("furrow_sync_part_duration_seconds"),
    )
}

/// Set in the simulator's process: this binary, run again, serves the simulated John Deere.
const SIMULATOR_ROLE: &str = "FURROW_BENCH_SIMULATOR";

/// The simulated world: `growers` × 2 organizations × `fields` fields, 20 ms or the given
/// latency, and the rate limit per client key.
fn sim_config() -> SimConfig {
    let mut config = SimConfig {
        world: WorldSize {
            growers: env_or("FURROW_BENCH_GROWERS", 50),
            connected_orgs_per_grower: 2,
            unconnected_orgs_per_grower: 0,
            clients_per_org: 1,
            farms_per_client: 2,
            fields_per_org: env_or("FURROW_BENCH_FIELDS", 20),
            operations_per_field: 4,
            files_per_org: 4,
            file_bytes: 16 * 1024,
        },
        ..SimConfig::default()
    };
    config.settings.latency_ms = env_or("FURROW_BENCH_LATENCY_MS", 50);
    config.settings.rate_limit_per_sec = Some(env_or("FURROW_BENCH_RATE", 100.0));
    config
}

/// The simulator's process: serves until its standard input closes (when the benchmark ends,
/// or dies), after printing its root, platform and issuer URLs, one per line.
fn serve_simulator() {
    // Two worker threads: with one, every answer waited whenever the operating system gave
    // that thread's core to furrow or the database (John Deere's side of a request took 50 ms
    // at 20 ms latency under load; 37 ms with two). John Deere's latency does not grow with
    // its clients' load.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = deere_sim::start(sim_config(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        println!(
            "{}\n{}\n{}",
            sim.root_url(),
            sim.platform_url(),
            sim.issuer_url()
        );
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await
            .ok();
        sim.shutdown().await;
    });
}

/// One line of the simulator's request log (`GET /__admin/requests`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Logged {
    method: String,
    path: String,
    status: u16,
    user: Option<String>,
    at_ms: u64,
    /// The simulator's own time on the request, its latency included.
    duration_ms: u64,
}

/// The benchmark's requests all succeed: their JSON answer.
trait JsonBody {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonBody for reqwest::RequestBuilder {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T {
        self.send().await.unwrap().json().await.unwrap()
    }
}

/// The simulator's process, driven over its admin API.
struct Simulator {
    child: std::process::Child,
    root: String,
    platform: String,
    issuer: String,
    http: reqwest::Client,
}

impl Simulator {
    fn spawn() -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(SIMULATOR_ROLE, "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut line = || lines.next().unwrap().unwrap();
        let (root, platform, issuer) = (line(), line(), line());
        Self {
            child,
            root,
            platform,
            issuer,
            http: reqwest::Client::new(),
        }
    }

    fn process(&self) -> String {
        self.child.id().to_string()
    }

    /// A refresh token for `user`'s grant to the benchmark's client key.
    async fn refresh_token(&self, user: &str) -> String {
        let issued: Value = self
            .http
            .post(format!("{}/__admin/tokens", self.root))
            .json(&json!({"clientKey": "sim-client", "userName": user, "scope": "ag1 ag2 files offline_access"}))
            .json_body()
            .await;
        issued["refresh_token"].as_str().unwrap().to_string()
    }

    /// The request log, from its start.
    async fn requests(&self) -> Vec<Logged> {
        self.http
            .get(format!("{}/__admin/requests", self.root))
            .json_body()
            .await
    }

    /// Closes its standard input, which ends it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// How long a connected grower's steps before its credentials' `POST` took, in seconds from
/// the first: its Leaf user created, then its refresh token issued by the simulator (the
/// grower's consent, given earlier in life).
#[derive(Clone, Copy)]
struct Before {
    user_created: f64,
    token_issued: f64,
}

/// The protocol's minimum for the first sync of the benchmark's world, with `;count=100` pages
/// (2 organizations per grower, 1 client and 2 farms per organization, 4 operations per field,
/// 4 files per organization of one chunk each).
fn protocol_minimum(growers: usize, fields: usize) -> usize {
    let pages = |items: usize| items.div_ceil(100).max(1);
    let per_org = pages(1) + pages(2) + pages(fields) + fields * (1 + pages(4)) + pages(4) + 4;
    growers * (1 + 2 * per_org)
}

fn main() {
    if std::env::var_os(SIMULATOR_ROLE).is_some() {
        return serve_simulator();
    }
    // furrow has a runtime of its own, as in a process of its own; the benchmark (its HTTP
    // client, its polling, the simulator's admin calls) runs on this thread, as a client would:
    // on furrow's runtime, each of its polls waited for a worker behind furrow's own tasks.
    let furrow_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(benchmark(furrow_runtime.handle().clone()));
}

/// How long a task made ready on furrow's runtime waits for a worker: a task spawned there from
/// the benchmark's thread every 5 ms (as a database answer or a timer wakes furrow's tasks from
/// outside its workers) reports when it first runs. Samples collect until taken.
fn probe_wake_delays(
    runtime: tokio::runtime::Handle,
) -> std::sync::Arc<std::sync::Mutex<Vec<f64>>> {
    let delays = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let samples = delays.clone();
    tokio::spawn(async move {
        loop {
            let sent = Instant::now();
            if let Ok(waited) = runtime.spawn(async move { sent.elapsed() }).await {
                samples.lock().unwrap().push(waited.as_secs_f64() * 1000.0);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    delays
}

/// The median, 90th and 99th percentile of milliseconds waited, taken (the samples start over).
fn take_percentiles(delays: &std::sync::Mutex<Vec<f64>>) -> String {
    let mut samples = std::mem::take(&mut *delays.lock().unwrap());
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!(
        "median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms ({} samples)",
        at(0.5),
        at(0.9),
        at(0.99),
        samples.len()
    )
}

async fn benchmark(furrow_runtime: tokio::runtime::Handle) {
    // RUST_LOG shows furrow's logs (the benchmark's figures go to stdout).
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let config = sim_config();
    let growers = config.world.growers;
    let fields = config.world.fields_per_org;
    let latency_ms = config.settings.latency_ms;
    let rate = config.settings.rate_limit_per_sec.unwrap_or_default();
    // Small growers connected, one after another, while the big sync runs (fair share), and the
    // pause between one's first fields and the next one's connection.
    let loaded_count: usize = env_or("FURROW_BENCH_SMALL_GROWERS", 5).max(1);
    let loaded_gap = Duration::from_millis(env_or("FURROW_BENCH_SMALL_GAP_MS", 3_000));
    // John Deere is a system of its own: the simulator runs in a process apart from furrow's,
    // so each one's CPU and memory are measured apart (the CPU is still shared). In furrow's
    // runtime, a worker thread waiting for the simulator's world lock stopped every furrow task
    // queued on it.
    let sim = Simulator::spawn();
    let dir = std::env::temp_dir().join(format!(
        "furrow-bench-sync-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        database_url: std::env::var("FURROW_BENCH_DATABASE_URL").ok(),
        deere_auth_url: sim.issuer.clone(),
        deere_stage_api_url: sim.platform.clone(),
        deere_production_api_url: sim.platform.clone(),
        engine_concurrency: env_or(
            "FURROW_BENCH_CONCURRENCY",
            Settings::default().engine_concurrency,
        ),
        // furrow is told the rate John Deere gives the client key, as an operator would
        // (FURROW_BENCH_PACED=0: not told, to compare; FURROW_BENCH_TOLD_RATE: told another,
        // as an operator who set it too high would).
        deere_rate_limit: if env_or("FURROW_BENCH_PACED", 1) == 1 {
            env_or("FURROW_BENCH_TOLD_RATE", rate)
        } else {
            0.0
        },
        sync_reads_per_part: env_or(
            "FURROW_BENCH_READS_PER_PART",
            Settings::default().sync_reads_per_part,
        ),
        database_ahead_connections: env_or(
            "FURROW_BENCH_AHEAD_CONNECTIONS",
            Settings::default().database_ahead_connections,
        ),
        database_bulk_connections: env_or(
            "FURROW_BENCH_BULK_CONNECTIONS",
            Settings::default().database_bulk_connections,
        ),
        engine_poll_ms: 50,
        // Scraped after the first sync: where a request's time went.
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        // The sync alone: operations' machine data (exports, parsing) is measured by
        // `--bench machine_data`; here it stays queued.
        machine_data_concurrency: 0,
        health_check_interval_secs: 86_400,
        ..Settings::default()
    };
    let app = furrow_runtime
        .spawn(furrow::app::start(settings))
        .await
        .unwrap()
        .unwrap();
    let wake_delays = probe_wake_delays(furrow_runtime.clone());
    furrow::api::auth::create_owner(&app.state.store, "bench@example.com", "bench-password")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = app.base_url();
    let token = http
        .post(format!("{base}/api/authenticate"))
        .json(&json!({"username": "bench@example.com", "password": "bench-password"}))
        .json_body::<Value>()
        .await["id_token"]
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
    // A Leaf user with the simulated grower's credentials: its first sync starts. Returns the
    // user's id and when its credentials were posted (after the user's creation and the
    // simulator's issuing of its refresh token: the grower's consent, given before).
    let connect = |grower: String| {
        let http = http.clone();
        let base = base.clone();
        let token = token.clone();
        let sim = &sim;
        async move {
            let started = Instant::now();
            let user: Value = http
                .post(format!("{base}/services/usermanagement/api/users"))
                .bearer_auth(&token)
                .json(&json!({"name": grower}))
                .json_body()
                .await;
            let user_id = user["id"].as_str().unwrap().to_string();
            let created = started.elapsed().as_secs_f64();
            let rt = sim.refresh_token(&grower).await;
            let token_issued = started.elapsed().as_secs_f64();
            let posted = Instant::now();
            let r = http
                .post(format!("{base}/services/usermanagement/api/users/{user_id}/john-deere-credentials"))
                .bearer_auth(&token)
                .json(&json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": rt, "clientEnvironment": "STAGE"}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let before = Before {
                user_created: created,
                token_issued,
            };
            (user_id, posted, before)
        }
    };
    // Fair share: a 5-field grower's time to its first data, alone and while the big sync runs.
    let small_grower = |name: &str| {
        let http = http.clone();
        let admin = format!("{}/__admin/growers", sim.root);
        let name = name.to_string();
        async move {
            let org = json!({"connectedTo": "sim-client", "fields": 5, "operationsPerField": 4, "files": 0});
            let r = http
                .post(admin)
                .json(&json!({"userName": name, "organizations": [org]}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            name
        }
    };
    // Seconds from its credentials' POST to the user's first fields, and to the milestones on
    // the way: the POST answered, its sync job claimed, the sync run started (its status
    // RUNNING), its parts queued. What came before the POST is printed too.
    let time_to_first_data = |user: String, posted: Instant, answered: f64, before: Before| {
        let store = app.state.store.clone();
        let http = http.clone();
        let base = base.clone();
        let token = token.clone();
        async move {
            let get = |path: String| {
                let http = http.clone();
                let token = token.clone();
                async move {
                    http.get(path)
                        .bearer_auth(&token)
                        .json_body::<Value>()
                        .await
                }
            };
            // The milestones are asked in a loop of their own, so that the fields are asked
            // every 10 ms whatever the milestones' queries take under load.
            let (mut claimed, mut running, mut parts) = (None, None, None);
            let milestones = async {
                loop {
                    let leased = sqlx::query(
                        "SELECT 1 AS one FROM jobs j JOIN jd_credentials c ON c.id = j.credential_id \
                         WHERE c.leaf_user_id = $1 AND j.kind = 'sync' AND j.lease_owner IS NOT NULL",
                    )
                    .bind(&user)
                    .fetch_optional(store.pool())
                    .await
                    .unwrap();
                    if leased.is_some() {
                        claimed.get_or_insert(posted.elapsed().as_secs_f64());
                    }
                    let status = get(format!(
                        "{base}/services/fields/api/users/{user}/fields/sync"
                    ))
                    .await;
                    let at = posted.elapsed().as_secs_f64();
                    if status["state"] == "RUNNING" {
                        running.get_or_insert(at);
                    }
                    if status["organizations"]
                        .as_array()
                        .is_some_and(|o| !o.is_empty())
                    {
                        parts.get_or_insert(at);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let first_fields = async {
                loop {
                    let fields = get(format!(
                        "{base}/services/fields/api/fields?leafUserId={user}"
                    ))
                    .await;
                    if fields.as_array().is_some_and(|f| !f.is_empty()) {
                        return posted.elapsed().as_secs_f64();
                    }
                    assert!(
                        posted.elapsed() < Duration::from_secs(900),
                        "no fields for {user}: {fields}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let at = tokio::select! {
                at = first_fields => at,
                _ = milestones => unreachable!("the milestones' loop never ends"),
            };
            let seen = |t: Option<f64>| t.map_or("-".into(), |t| format!("{t:.2} s"));
            println!(
                "  {user}: user created in {:.2} s, its refresh token issued {:.2} s after; from its credentials' POST: answered {answered:.2} s, sync job claimed {}, sync running {}, parts queued {}, first fields {at:.2} s",
                before.user_created,
                before.token_issued - before.user_created,
                seen(claimed),
                seen(running),
                seen(parts)
            );
            at
        }
    };
    // One small grower added to the simulator and connected: its time to its first fields.
    let small_sample = |name: String| {
        let small_grower = &small_grower;
        let connect = &connect;
        let time_to_first_data = &time_to_first_data;
        async move {
            let name = small_grower(&name).await;
            let (user, posted, before) = connect(name).await;
            let answered = posted.elapsed().as_secs_f64();
            time_to_first_data(user, posted, answered, before).await
        }
    };
    // The time alone is the median of a few growers connected one after another before the big
    // sync: the first pays for what furrow does once (its first requests to the simulator and
    // the database), and one sample moved between 0.20 and 0.40 s from run to run.
    let mut alone_times = Vec::new();
    for n in 1..=ALONE_SAMPLES {
        alone_times.push(small_sample(format!("small-alone-{n}")).await);
    }
    let alone_list = alone_times
        .iter()
        .map(|t| format!("{t:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    alone_times.sort_by(f64::total_cmp);
    let alone = alone_times[alone_times.len() / 2];
    let wake_delays_alone = take_percentiles(&wake_delays);

    let log_start = sim.requests().await.len();
    let started = Instant::now();
    let cpu_before = (cpu_seconds("self"), cpu_seconds(&sim.process()));
    let written_before = disk_write_bytes("self");
    let threads_before = thread_cpu_seconds();
    // Posted as an application onboarding many growers would: several at once.
    let users: Vec<String> = futures_util::stream::iter(0..growers)
        .map(|g| connect(format!("grower{:03}", g + 1)))
        .buffered(CONNECTS_AT_ONCE)
        .map(|(user, _, _)| user)
        .collect()
        .await;
    let connected = started.elapsed().as_secs_f64();
    // Small growers connected one after another while the big sync runs, a few seconds apart,
    // so that they meet it in its different phases (its sync runs, then its parts).
    let loaded_samples = async {
        let mut times = Vec::new();
        for n in 1..=loaded_count {
            times.push(small_sample(format!("small-loaded-{n}")).await);
            tokio::time::sleep(loaded_gap).await;
        }
        times
    };
    let done = |users: Vec<String>, after: Vec<Value>| {
        let http = http.clone();
        let base = base.clone();
        let token = token.clone();
        async move {
            // A grower seen finished stays finished: each is asked until it is, in order, so
            // that the benchmark's own polling does not load the server it measures.
            let mut finished: Vec<Value> = Vec::with_capacity(users.len());
            loop {
                while let Some(u) = users.get(finished.len()) {
                    let s: Value = http
                        .get(format!("{base}/services/fields/api/users/{u}/fields/sync"))
                        .bearer_auth(&token)
                        .json_body()
                        .await;
                    let fresh = s["state"] == "DONE"
                        && after
                            .get(finished.len())
                            .is_none_or(|a| *a != s["finishedTime"]);
                    if !fresh {
                        break;
                    }
                    finished.push(s["finishedTime"].clone());
                }
                if finished.len() == users.len() {
                    return finished;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // What the engine's slots held during the sync, sampled every 100 ms (the sync lane's jobs
    // only, by its index: a scan of every job, tens of thousands of machine-data jobs among
    // them, took the database 11 ms per sample on PostgreSQL).
    let slots = {
        let store = app.state.store.clone();
        tokio::spawn(async move {
            let mut sums = std::collections::BTreeMap::<String, i64>::new();
            let mut samples = 0i64;
            loop {
                let rows = sqlx::query(
                    "SELECT CASE WHEN kind LIKE 'part:%/fields' THEN 'fields parts' \
                            WHEN kind LIKE 'part:%/files' THEN 'files parts' \
                            WHEN kind = 'sync' THEN 'sync runs' ELSE kind END AS what, COUNT(*) AS n \
                     FROM jobs WHERE machine_data = 0 AND lease_owner IS NOT NULL GROUP BY 1",
                )
                .fetch_all(store.pool())
                .await
                .unwrap();
                for row in rows {
                    *sums.entry(row.get::<String, _>("what")).or_default() +=
                        row.get::<i64, _>("n");
                }
                samples += 1;
                let out: Vec<String> = sums
                    .iter()
                    .map(|(k, n)| format!("{k} {:.1}", *n as f64 / samples as f64))
                    .collect();
                SLOTS.lock().unwrap().clone_from(&out.join(", "));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // The first sync's figures are taken when its last grower is done, not when the small
    // growers' samples end (which may be later).
    let first_sync = async {
        let finished = done(users.clone(), Vec::new()).await;
        (
            finished,
            started.elapsed().as_secs_f64(),
            (
                cpu_seconds("self") - cpu_before.0,
                cpu_seconds(&sim.process()) - cpu_before.1,
            ),
            disk_write_bytes("self") - written_before,
        )
    };
    let ((first_finished, wall, (cpu, sim_cpu), written), mut loaded) =
        tokio::join!(first_sync, loaded_samples);
    slots.abort();
    let wake_delays_loaded = take_percentiles(&wake_delays);
    // The big sync's requests (the small growers' left out).
    let log: Vec<_> = sim.requests().await[log_start..]
        .iter()
        .filter(|e| !e.user.as_deref().is_some_and(|u| u.starts_with("small-")))
        .cloned()
        .collect();
    let limited = log.iter().filter(|e| e.status == 429).count();
    let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
    for e in log.iter().filter(|e| e.status != 429) {
        *by_kind.entry(kind_of(&e.path)).or_default() += 1;
    }
    let sync_requests: usize = by_kind
        .iter()
        .filter(|(k, _)| SYNC_KINDS.contains(k))
        .map(|(_, n)| n)
        .sum();
    let minimum = protocol_minimum(growers as usize, fields as usize);
    // The bound John Deere sets: its rate limit over the protocol's minimum requests, or the
    // longest chain of requests that depend on each other, whichever is longer.
    let rate_bound = minimum as f64 / rate;
    let chain = DEPENDENCY_DEPTH as f64 * latency_ms as f64 / 1000.0;
    let bound = rate_bound.max(chain);
    println!(
        "first full sync:   {wall:.1} s wall; John Deere answered {} requests (+{limited} answered 429): {}",
        log.len() - limited,
        by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "protocol minimum:  {minimum} sync requests (;count=100 pages: per grower its organizations; per \
         organization its clients, farms, fields and files; per field its boundaries and operations; \
         per file its download); furrow made {sync_requests}: ratio {:.2} (goal <= 1.05)",
        sync_requests as f64 / minimum as f64
    );
    println!(
        "upstream bound:    {bound:.1} s = max({minimum} requests / {rate} req/s = {rate_bound:.1} s, \
         dependency depth {DEPENDENCY_DEPTH} x {latency_ms} ms = {chain:.1} s); ratio {:.2} (goal <= 1.25)",
        wall / bound
    );
    let in_simulator_ms = log.iter().map(|e| e.duration_ms).sum::<u64>() as f64;
    println!(
        "John Deere's side: {:.1} ms per answer on average in the simulator ({latency_ms} ms latency \
         included); the rest of a request's time, as furrow measures it below, is spent between them",
        in_simulator_ms / log.len().max(1) as f64
    );
    if let Some(addr) = app.metrics_addr {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        println!("where time went:   {}", time_per_request(&text));
    }
    println!(
        "slots in use:      {} on average (of {} slots)",
        SLOTS.lock().unwrap(),
        app.state.settings.engine_concurrency
    );
    println!(
        "429s:              {limited} of {} requests ({:.1} %, goal < 1 %)",
        log.len(),
        100.0 * limited as f64 / log.len().max(1) as f64
    );
    loaded.sort_by(f64::total_cmp);
    let median = loaded[loaded.len() / 2];
    let worst = loaded[loaded.len() - 1];
    println!(
        "fair share:        {loaded_count} 5-field growers connected one after another while the big sync ran had \
         their first fields {} s after their credentials' POST; alone {alone_list} s, median {alone:.2} s: ratio median {:.2}, worst {:.2} (goal <= 2)",
        loaded.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(", "),
        median / alone,
        worst / alone
    );
    println!(
        "furrow's runtime:  a task made ready waited for a worker: alone {wake_delays_alone}; \
         during the big sync {wake_delays_loaded}"
    );
    // Where the small growers' time went: their requests as John Deere saw them, from each one's
    // first (the token or organizations read after its credentials were posted).
    let small_names = (1..=ALONE_SAMPLES)
        .map(|n| format!("small-alone-{n}"))
        .chain((1..=loaded_count).map(|n| format!("small-loaded-{n}")));
    for name in small_names {
        let mine: Vec<_> = sim
            .requests()
            .await
            .into_iter()
            .filter(|e| e.user.as_deref() == Some(name.as_str()))
            .collect();
        let first_ms = mine.first().map_or(0, |e| e.at_ms);
        println!(
            "  {name} requests (ms after its first): {}",
            mine.iter()
                .map(|e| format!("{} +{}", kind_of(&e.path), e.at_ms - first_ms))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // When John Deere saw the requests: how evenly the budget was spent.
    let first_ms = log.first().map_or(0, |e| e.at_ms);
    let span_ms = log
        .last()
        .map_or(0, |e| e.at_ms)
        .saturating_sub(first_ms)
        .max(1);
    let mut tenths = [0usize; 10];
    for e in &log {
        tenths[(((e.at_ms - first_ms) * 10 / span_ms) as usize).min(9)] += 1;
    }
    println!(
        "timeline:          credentials posted in {connected:.1} s; requests from first to last {:.1} s; \
         req/s by tenth of that: {}",
        span_ms as f64 / 1000.0,
        tenths
            .iter()
            .map(|n| format!("{:.0}", *n as f64 / (span_ms as f64 / 10_000.0)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let per_thousand = |cpu: f64| cpu * 1000.0 / log.len().max(1) as f64;
    // The busiest threads over the first sync (and the re-sync's start: taken now).
    let mut busiest: Vec<(String, f64)> = thread_cpu_seconds()
        .into_iter()
        .map(|(tid, (name, cpu))| {
            let before = threads_before.get(&tid).map_or(0.0, |(_, c)| *c);
            (format!("{name} {tid}"), cpu - before)
        })
        .collect();
    busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "busiest threads:   {}",
        busiest
            .iter()
            .take(8)
            .map(|(t, cpu)| format!("{t} {cpu:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "CPU:               furrow {cpu:.1} s user+system for the first sync = {:.2} s per 1,000 John Deere \
         requests; the simulator {sim_cpu:.1} s = {:.2} s per 1,000",
        per_thousand(cpu),
        per_thousand(sim_cpu)
    );
    println!(
        "disk writes:       furrow {:.0} MiB for the first sync = {:.1} KiB per John Deere request{}",
        written / 1_048_576.0,
        written / 1024.0 / log.len().max(1) as f64,
        if app.state.store.backend() == furrow::store::Backend::Sqlite {
            " (SQLite's write-ahead log and its checkpoints)"
        } else {
            " (PostgreSQL's server writes apart)"
        }
    );

    // Unchanged re-sync of everything.
    let before = sim.requests().await.len();
    let resync_started = Instant::now();
    for u in &users {
        http.post(format!("{base}/services/fields/api/users/{u}/fields/sync"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }
    done(users.clone(), first_finished).await;
    let resync = sim.requests().await[before..]
        .iter()
        .filter(|e| e.status != 429)
        .cloned()
        .collect::<Vec<_>>();
    let not_modified = resync.iter().filter(|e| e.status == 304).count();
    // One request per collection: organizations, and per org clients, farms, fields, files,
    // and per field its operations.
    let resync_minimum = growers as usize * (1 + 2 * 4 + 2 * fields as usize);
    println!(
        "unchanged re-sync: {:.1} s, {} requests ({not_modified} answered 304) against a minimum of {resync_minimum}: ratio {:.2} (goal 1.0)",
        resync_started.elapsed().as_secs_f64(),
        resync.len(),
        resync.len() as f64 / resync_minimum as f64
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
        "peak memory:       furrow {:.0} MiB; the simulator {:.0} MiB",
        peak_rss_mib("self"),
        peak_rss_mib(&sim.process())
    );
    furrow_runtime.spawn(app.shutdown()).await.unwrap();
    sim.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
