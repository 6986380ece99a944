//! The request log of the real binary (`furrow serve` with `FURROW_LOG_FORMAT=json`): one JSON
//! line per answer with the request id, the caller's id echoed, and no secret from a path,
//! query or body in any line. Also `/ready`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SECRET_PASSWORD: &str = "pw-6f1b2c-never-logged";
const SECRET_CODE: &str = "code-93ad17-never-logged";
const SECRET_LINK: &str = "link-5e0c44-never-logged";

#[tokio::test]
async fn json_request_log_carries_request_ids_and_no_secrets() {
    let dir = std::env::temp_dir().join(format!(
        "furrow-request-log-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_furrow"))
        .arg("serve")
        .env("FURROW_LISTEN", "127.0.0.1:0")
        .env("FURROW_DATA_DIR", &dir)
        .env("FURROW_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("FURROW_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("furrow runs");
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
        .json(&serde_json::json!({"username": "nobody@example.com", "password": SECRET_PASSWORD}))
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

    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let lines = log.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
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
