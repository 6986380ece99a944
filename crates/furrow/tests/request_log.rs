//! The request log of the real binary (`furrow serve` with `FURROW_LOG_FORMAT=json`): one JSON
//! line per answer with the request id, the caller's id echoed and carried into the jobs the
//! request queued, and no secret from a path, query or body in any line. Also `/ready`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const SECRET_PASSWORD: &str = "pw-6f1b2c-never-logged";
const SECRET_CODE: &str = "code-93ad17-never-logged";
const SECRET_LINK: &str = "link-5e0c44-never-logged";

/// `furrow serve` in a fresh data directory, logging JSON to a pipe.
struct Served {
    base: String,
    child: Child,
    log: std::thread::JoinHandle<Vec<String>>,
    dir: PathBuf,
}

impl Served {
    fn start(extra_env: &[(&str, String)], before: impl FnOnce(&PathBuf)) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "furrow-request-log-{}",
            uuid::Uuid::new_v4().simple()
        ));
        before(&dir);
        let mut command = Command::new(env!("CARGO_BIN_EXE_furrow"));
        command
            .arg("serve")
            .env("FURROW_LISTEN", "127.0.0.1:0")
            .env("FURROW_DATA_DIR", &dir)
            .env("FURROW_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("FURROW_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("furrow runs");
        let stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let base = first
            .trim()
            .strip_prefix("furrow listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        Served {
            base,
            child,
            log,
            dir,
        }
    }

    /// Stops the server; its log lines, each parsed (every one must be JSON).
    async fn stop(mut self) -> (Vec<String>, Vec<Value>) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let lines = self.log.join().unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
        let records = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        (lines, records)
    }
}

#[tokio::test]
async fn json_request_log_carries_request_ids_and_no_secrets() {
    let served = Served::start(&[], |_| {});
    let base = served.base.clone();
    let http = reqwest::Client::new();

    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["keyRing"], "ok");

    // The caller's id comes back; without one (or with one unfit for a log), a fresh one.
    let traced = http
        .get(format!("{base}/health"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.headers()["x-request-id"], "trace-me-123");
    for header in [None, Some("has space\tand tab")] {
        let mut request = http.get(format!("{base}/health"));
        if let Some(h) = header {
            request = request.header("x-request-id", h);
        }
        let r = request.send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }

    // Secrets in a body, a query and a path.
    let refused = http
        .post(format!("{base}/api/authenticate"))
        .header("x-request-id", "bad-login")
        .json(&json!({"username": "nobody@example.com", "password": SECRET_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let callback = http
        .get(format!(
            "{base}/connect/john-deere/callback?code={SECRET_CODE}&state=whatever"
        ))
        .send()
        .await
        .unwrap();
    assert!(callback.status().is_client_error(), "{}", callback.status());
    let link = http
        .get(format!("{base}/connect/{SECRET_LINK}"))
        .send()
        .await
        .unwrap();
    assert!(link.status().is_client_error(), "{}", link.status());

    let (lines, records) = served.stop().await;
    let answered = |id: &str| {
        records
            .iter()
            .find(|r| r["fields"]["message"] == "answered" && r["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no answer logged for {id}: {lines:#?}"))
    };
    let health = answered("trace-me-123");
    assert_eq!(health["span"]["route"], "/health");
    assert_eq!(health["span"]["method"], "GET");
    assert_eq!(health["fields"]["status"], 200);
    assert_eq!(answered("bad-login")["fields"]["status"], 401);
    assert!(records
        .iter()
        .any(|r| r["span"]["route"] == "/connect/{link_id}"));
    for secret in [SECRET_PASSWORD, SECRET_CODE, SECRET_LINK] {
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "{secret} reached the log: {lines:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_the_credentials_into_their_first_sync() {
    let sim = deere_sim::start(
        deere_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let served = Served::start(
        &[
            ("FURROW_DEERE_AUTH_URL", sim.issuer_url()),
            ("FURROW_DEERE_STAGE_API_URL", sim.platform_url().to_string()),
            ("FURROW_ENGINE_POLL_MS", "50".into()),
            ("FURROW_DEERE_WEBHOOKS", "false".into()),
        ],
        |dir| {
            let created = Command::new(env!("CARGO_BIN_EXE_furrow"))
                .args(["owner", "create", "--email", "ops@example.com"])
                .env("FURROW_OWNER_PASSWORD", SECRET_PASSWORD)
                .env("FURROW_DATA_DIR", dir)
                .env_remove("FURROW_DATABASE_URL")
                .output()
                .unwrap();
            assert!(created.status.success(), "{created:?}");
        },
    );
    let (base, http) = (served.base.clone(), reqwest::Client::new());
    let token = http
        .post(format!("{base}/api/authenticate"))
        .json(&json!({"username": "ops@example.com", "password": SECRET_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let user = http
        .post(format!("{base}/services/usermanagement/api/users"))
        .bearer_auth(&token)
        .json(&json!({"name": "traced"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens = sim
        .issue_tokens(
            "sim-client",
            "grower001",
            &["ag1", "ag2", "files", "offline_access"],
        )
        .unwrap();
    let refresh_token = tokens.refresh_token.unwrap();
    let created = http
        .post(format!(
            "{base}/services/usermanagement/api/users/{user}/john-deere-credentials"
        ))
        .bearer_auth(&token)
        .header("x-request-id", "connect-grower-42")
        .json(
            &json!({"clientKey": "sim-client", "clientSecret": "sim-secret",
                      "refreshToken": refresh_token, "clientEnvironment": "STAGE"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut sync = Value::Null;
    for _ in 0..200 {
        sync = http
            .get(format!(
                "{base}/services/fields/api/users/{user}/fields/sync"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if sync["state"] == "DONE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sync["state"], "DONE", "{sync}");
    let (lines, records) = served.stop().await;

    // The sync job the request queued logs under the request's id.
    let started = records
        .iter()
        .find(|r| r["fields"]["message"] == "sync run started")
        .unwrap_or_else(|| panic!("no sync run logged: {lines:#?}"));
    assert_eq!(
        started["span"]["request_id"], "connect-grower-42",
        "{started}"
    );
    assert_eq!(started["span"]["kind"], "sync");
    for secret in [
        refresh_token.as_str(),
        tokens.access_token.as_str(),
        "sim-secret",
        SECRET_PASSWORD,
    ] {
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "a secret reached the log: {lines:#?}"
        );
    }
}
