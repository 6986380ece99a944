//! Work is durable: `furrow serve` killed with SIGKILL in the middle of a sync, then started
//! again, finishes the sync with every row present once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fresh_database, Db};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
}

fn furrow(args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_furrow"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn serve(env: &[(String, String)]) -> Server {
    let mut child = furrow(&["serve"], env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("furrow serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("furrow listening on ")
        .expect("listening line")
        .to_string();
    Server { child, base }
}

async fn sync_of_a_killed_server_completes_after_restart(db: Db) {
    let sim = deere_sim::start(
        deere_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let admin = format!("{}/__admin", sim.root_url());
    let big = json!({"userName": "bigfarm", "organizations": [
        {"connectedTo": "sim-client", "fields": 15, "operationsPerField": 2, "files": 2},
        {"connectedTo": "sim-client", "fields": 15, "operationsPerField": 2, "files": 2}]});
    assert!(http
        .post(format!("{admin}/growers"))
        .json(&big)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    // Slow enough that the kill lands mid-sync.
    http.patch(format!("{admin}/settings"))
        .json(&json!({"latencyMs": 40}))
        .send()
        .await
        .unwrap();

    let (database_url, data_dir) = fresh_database(db).await;
    let env: Vec<(String, String)> = [
        ("FURROW_LISTEN", "127.0.0.1:0".to_string()),
        ("FURROW_DATA_DIR", data_dir.display().to_string()),
        ("FURROW_DATABASE_URL", database_url.clone()),
        ("FURROW_DEERE_AUTH_URL", sim.issuer_url()),
        ("FURROW_DEERE_STAGE_API_URL", sim.platform_url().to_string()),
        ("FURROW_LEASE_SECS", "2".into()),
        ("FURROW_ENGINE_POLL_MS", "50".into()),
        ("FURROW_HEALTH_CHECK_INTERVAL_SECS", "3600".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let created = furrow(
        &[
            "owner",
            "create",
            "--email",
            "crash@example.com",
            "--password",
            "crash-password",
        ],
        &env,
    )
    .output()
    .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let mut server = serve(&env);
    let token: String = http
        .post(format!("{}/api/authenticate", server.base))
        .json(&json!({"username": "crash@example.com", "password": "crash-password"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let user: Value = http
        .post(format!("{}/services/usermanagement/api/users", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "big"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = user["id"].as_str().unwrap().to_string();
    let rt = sim
        .issue_tokens(
            "sim-client",
            "bigfarm",
            &["ag1", "ag2", "files", "offline_access"],
        )
        .unwrap()
        .refresh_token
        .unwrap();
    let r = http
        .post(format!("{}/services/usermanagement/api/users/{user}/john-deere-credentials", server.base))
        .bearer_auth(&token)
        .json(&json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": rt, "clientEnvironment": "STAGE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Kill -9 once the sync is well under way.
    let started = Instant::now();
    while sim
        .requests()
        .iter()
        .filter(|e| e.path.contains("/boundaries"))
        .count()
        < 5
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sync never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let status_url = |base: &str| format!("{base}/services/fields/api/users/{user}/fields/sync");

    let mut server = serve(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let s: Value = http
            .get(status_url(&server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["state"] == "DONE" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "sync did not complete after the restart: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fields: Value = http
        .get(format!(
            "{}/services/fields/api/fields?leafUserId={user}&size=100",
            server.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fields = fields.as_array().unwrap();
    assert_eq!(fields.len(), 30, "{done}");
    let mut ids: Vec<&str> = fields
        .iter()
        .map(|f| f["providerFieldId"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "no duplicates");
    let ops: Value = http
        .get(format!(
            "{}/services/operations/api/operations?leafUserId={user}&size=100",
            server.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The seeded operations are 2022–2024; the default range (12 months) keeps none of them,
    // so check files instead, which have no range.
    assert!(ops.as_array().is_some());
    let files: Value = http
        .get(format!(
            "{}/services/operations/api/files?leafUserId={user}&size=100",
            server.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(files.as_array().unwrap().len(), 4);
    assert!(files
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["status"] == "processed"));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    sim.shutdown().await;
    common::drop_database(&database_url, &data_dir).await;
}
both_backends!(
    kill_mid_sync,
    sync_of_a_killed_server_completes_after_restart
);
