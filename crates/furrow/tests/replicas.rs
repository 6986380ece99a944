//! Several replicas on one database: invariant 2 (with refresh-token rotation, two replicas
//! refreshing the same credentials never present a rotated-out refresh token), sharing one
//! account's sync, handing jobs over at shutdown, and sharing one client key's rate limit.

mod common;

use std::time::Duration;

use common::{fresh_database, test_settings, Db};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_reuse_a_rotated_refresh_token() {
    let sim = deere_sim::start(
        deere_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    {
        let mut state = sim.state();
        state.settings.rotate_refresh_tokens = true;
        state.settings.reuse_detection = true;
        // Access tokens live 2 s; with a 1 s margin each credential refreshes about every second.
        state.settings.token_ttl_secs = 2;
    }
    let (database_url, data_dir) = fresh_database(Db::Postgres).await;
    let mut settings = test_settings(&sim, &database_url, &data_dir);
    settings.refresh_margin_secs = 1;
    settings.engine_poll_ms = 20;
    settings.health_check_interval_secs = 3600;
    let a = furrow::app::start(settings.clone()).await.unwrap();
    let b = furrow::app::start(settings.clone()).await.unwrap();
    assert_ne!(a.state.replica_id, b.state.replica_id);
    furrow::api::auth::create_owner(&a.state.store, "owner@example.com", "correct horse battery")
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let token = login(&http, &a.base_url()).await;
    let mut users = Vec::new();
    for i in 0..6 {
        let user: serde_json::Value = http
            .post(format!(
                "{}/services/usermanagement/api/users",
                a.base_url()
            ))
            .bearer_auth(&token)
            .json(&json!({"name": format!("g{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user_id = user["id"].as_str().unwrap().to_string();
        let grower = if i % 2 == 0 { "grower001" } else { "grower002" };
        let rt = sim
            .issue_tokens(
                "sim-client",
                grower,
                &["ag1", "ag2", "files", "offline_access"],
            )
            .unwrap()
            .refresh_token
            .unwrap();
        let r = http
            .post(format!("{}/services/usermanagement/api/users/{user_id}/john-deere-credentials", a.base_url()))
            .bearer_auth(&token)
            .json(&json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": rt, "clientEnvironment": "STAGE"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        users.push(user_id);
    }

    tokio::time::sleep(Duration::from_secs(6)).await;
    a.shutdown().await;
    b.shutdown().await;

    let token_calls: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|e| e.path.ends_with("/v1/token"))
        .map(|e| e.status)
        .collect();
    let refreshes = token_calls.len();
    assert!(
        refreshes >= 6 * 4,
        "expected many refreshes, saw {refreshes}"
    );
    assert!(
        token_calls.iter().all(|s| *s == 200),
        "a refresh was rejected: {token_calls:?}"
    );

    // Each stored refresh token is the live one: a final refresh with it works.
    let state = furrow::app::AppState::build(settings).await.unwrap();
    for c in state.store.all_credentials().await.unwrap() {
        assert_eq!(c.status, "OK");
        let rt = state.keyring.decrypt(&c.refresh_token_enc).unwrap();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", secrecy::ExposeSecret::expose_secret(&rt)),
        ];
        let r = http
            .post(format!("{}/v1/token", sim.issuer_url()))
            .basic_auth("sim-client", Some("sim-secret"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "stored refresh token for {} is stale",
            c.id
        );
    }
    sim.shutdown().await;
    common::drop_database(&database_url, &data_dir).await;
}

/// One account's sync is split into parts (per organization: fields, files) that any replica
/// runs: two replicas, each running one job at a time, share one grower's four organizations,
/// and the result is the whole account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_accounts_sync() {
    let sim = deere_sim::start(
        deere_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let admin = format!("{}/__admin", sim.root_url());
    let org =
        json!({"connectedTo": "sim-client", "fields": 4, "operationsPerField": 1, "files": 1});
    let created = http
        .post(format!("{admin}/growers"))
        .json(&json!({"userName": "wide", "organizations": [org, org, org, org]}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    // Every request takes a while, so parts overlap.
    sim.state().settings.latency_ms = 20;
    let (database_url, data_dir) = fresh_database(Db::Postgres).await;
    let mut settings = test_settings(&sim, &database_url, &data_dir);
    settings.engine_poll_ms = 20;
    settings.engine_concurrency = 1;
    settings.health_check_interval_secs = 3600;
    let a = furrow::app::start(settings.clone()).await.unwrap();
    let b = furrow::app::start(settings.clone()).await.unwrap();
    furrow::api::auth::create_owner(&a.state.store, "owner@example.com", "correct horse battery")
        .await
        .unwrap();
    let token = login(&http, &a.base_url()).await;
    // Operations from any year.
    let user = connected_user(
        &http,
        &a.base_url(),
        &token,
        &sim,
        "wide",
        json!({"operationsProcessingRange": 120}),
    )
    .await;
    let status = wait_for_state(&http, &b.base_url(), &token, &user, "DONE").await;
    assert_eq!(status["state"], "DONE", "{status}");
    // The whole account: 4 orgs x 4 fields, 1 operation each, 1 file each.
    assert_eq!(status["counts"]["organizations"], 4, "{status}");
    assert_eq!(status["counts"]["fields"], 16, "{status}");
    assert_eq!(status["counts"]["operations"], 16, "{status}");
    assert_eq!(status["counts"]["files"], 4, "{status}");
    // 8 parts (fields and files of 4 orgs), finished by both replicas.
    let rows = sqlx::query("SELECT done_by FROM sync_parts WHERE part <> '_run'")
        .fetch_all(a.state.store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 8);
    let by: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| sqlx::Row::try_get::<String, _>(r, "done_by").unwrap())
        .collect();
    assert_eq!(
        by,
        [a.state.replica_id.clone(), b.state.replica_id.clone()].into(),
        "both replicas ran parts"
    );
    a.shutdown().await;
    b.shutdown().await;
    sim.shutdown().await;
    common::drop_database(&database_url, &data_dir).await;
}

/// A replica that shuts down in the middle of a sync hands its jobs over at once: it stops
/// what is still running after its grace period and releases its leases, so the other replica
/// finishes the sync long before the leases (ten minutes here) would have run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_shutting_down_hands_its_jobs_over_at_once() {
    let sim = deere_sim::start(
        deere_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (database_url, data_dir) = fresh_database(Db::Postgres).await;
    let mut settings = test_settings(&sim, &database_url, &data_dir);
    settings.engine_poll_ms = 20;
    settings.health_check_interval_secs = 3600;
    settings.lease_secs = 600;
    settings.shutdown_grace_secs = 0;
    let a = furrow::app::start(settings.clone()).await.unwrap();
    furrow::api::auth::create_owner(&a.state.store, "owner@example.com", "correct horse battery")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let token = login(&http, &a.base_url()).await;
    // Every John Deere request takes 300 ms: the first sync takes many seconds.
    sim.state().settings.latency_ms = 300;
    let user = connected_user(&http, &a.base_url(), &token, &sim, "grower001", json!({})).await;
    // Replica A is in the middle of the sync, holding its leases.
    let status = wait_for_state(&http, &a.base_url(), &token, &user, "RUNNING").await;
    assert_eq!(status["state"], "RUNNING", "{status}");
    let held = |pool: sqlx::PgPool, owner: String| async move {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM jobs WHERE lease_owner = $1")
            .bind(owner)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    assert!(held(pool.clone(), a.state.replica_id.clone()).await >= 1);

    let b = furrow::app::start(settings.clone()).await.unwrap();
    let a_id = a.state.replica_id.clone();
    a.shutdown().await;
    assert_eq!(held(pool.clone(), a_id).await, 0, "leases released");
    sim.state().settings.latency_ms = 0;
    let status = wait_for_state(&http, &b.base_url(), &token, &user, "DONE").await;
    // Within 30 s of polling: the leases (600 s) did not have to run out.
    assert_eq!(status["state"], "DONE", "{status}");
    assert!(status["counts"]["fields"].as_i64().unwrap() > 0, "{status}");
    b.shutdown().await;
    common::drop_database(&database_url, &data_dir).await;
}

/// John Deere's rate limit is per client key: two replicas syncing four growers of one key at
/// once, each with more work in flight than the limit allows, draw from one budget in the
/// database and together stay under the limit — John Deere refuses (next to) nothing.
async fn two_replicas_stay_under_one_client_keys_rate_limit(db: Db) {
    const RATE: f64 = 30.0;
    let sim = deere_sim::start(
        deere_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    {
        let mut state = sim.state();
        state.settings.rate_limit_per_sec = Some(RATE);
        state.settings.latency_ms = 20;
    }
    let (database_url, data_dir) = fresh_database(db).await;
    let mut settings = test_settings(&sim, &database_url, &data_dir);
    settings.engine_poll_ms = 20;
    settings.engine_concurrency = 3;
    settings.health_check_interval_secs = 3600;
    settings.deere_rate_limit = RATE;
    let a = furrow::app::start(settings.clone()).await.unwrap();
    let b = furrow::app::start(settings.clone()).await.unwrap();
    furrow::api::auth::create_owner(&a.state.store, "owner@example.com", "correct horse battery")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let token = login(&http, &a.base_url()).await;
    let mut users = Vec::new();
    for (i, grower) in ["grower001", "grower002", "grower001", "grower002"]
        .into_iter()
        .enumerate()
    {
        let base = if i % 2 == 0 {
            a.base_url()
        } else {
            b.base_url()
        };
        users.push(connected_user(&http, &base, &token, &sim, grower, json!({})).await);
    }
    for user in &users {
        let status = wait_for_state(&http, &b.base_url(), &token, user, "DONE").await;
        assert_eq!(status["state"], "DONE", "{status}");
    }
    let parts_by: std::collections::HashSet<String> =
        sqlx::query("SELECT done_by FROM sync_parts WHERE part <> '_run'")
            .fetch_all(a.state.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| sqlx::Row::try_get::<String, _>(r, "done_by").unwrap())
            .collect();
    assert_eq!(parts_by.len(), 2, "both replicas synced: {parts_by:?}");
    a.shutdown().await;
    b.shutdown().await;

    let log: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|e| e.client_key.as_deref() == Some("sim-client"))
        .collect();
    let refused = log.iter().filter(|e| e.status == 429).count();
    assert!(
        log.len() as f64 > 3.0 * RATE,
        "the syncs needed several seconds of the budget: {} requests",
        log.len()
    );
    assert!(
        refused * 100 < log.len(),
        "{refused} of {} requests answered 429",
        log.len()
    );
    // In every second, at most the rate plus furrow's half-second burst (John Deere's own
    // bucket would let a whole second's burst through: this is furrow pacing itself).
    let arrivals: Vec<u64> = log.iter().map(|e| e.at_ms).collect();
    let busiest = arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|t| **t >= *start && **t < start + 1000)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest as f64 <= RATE * 1.5 + 3.0,
        "{busiest} requests arrived within one second"
    );
    sim.shutdown().await;
    common::drop_database(&database_url, &data_dir).await;
}

both_backends!(
    rate_limit_shared_by_replicas,
    two_replicas_stay_under_one_client_keys_rate_limit
);

/// The owner's id_token, from replica `base`.
async fn login(http: &reqwest::Client, base: &str) -> String {
    http.post(format!("{base}/api/authenticate"))
        .json(&json!({"username": "owner@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["id_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A Leaf user with the simulated grower `grower`'s credentials (its first sync starts).
async fn connected_user(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    sim: &deere_sim::RunningSim,
    grower: &str,
    configure: serde_json::Value,
) -> String {
    let user: serde_json::Value = http
        .post(format!("{base}/services/usermanagement/api/users"))
        .bearer_auth(token)
        .json(&json!({"name": grower}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = user["id"].as_str().unwrap().to_string();
    http.post(format!("{base}/services/config/api/configs/{user}"))
        .bearer_auth(token)
        .json(&configure)
        .send()
        .await
        .unwrap();
    let rt = sim
        .issue_tokens(
            "sim-client",
            grower,
            &["ag1", "ag2", "files", "offline_access"],
        )
        .unwrap()
        .refresh_token
        .unwrap();
    let r = http
        .post(format!("{base}/services/usermanagement/api/users/{user}/john-deere-credentials"))
        .bearer_auth(token)
        .json(&json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": rt, "clientEnvironment": "STAGE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    user
}

/// Polls the user's sync status on replica `base` until `state` (or 30 s), and returns it.
async fn wait_for_state(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    user: &str,
    state: &str,
) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    for _ in 0..1200 {
        status = http
            .get(format!(
                "{base}/services/fields/api/users/{user}/fields/sync"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["state"] == state {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    status
}
