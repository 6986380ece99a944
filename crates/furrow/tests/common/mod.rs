//! Black-box harness: furrow and deere-sim on port 0, real HTTP, a fresh database per test on
//! SQLite (a temp file) or PostgreSQL (a new database on the machine's server).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use furrow::app::Running;
use furrow::config::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(super::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(super::common::Db::Postgres).await
            }
        }
    };
}

pub fn postgres_admin_url() -> String {
    std::env::var("FURROW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database URL for one test.
pub async fn fresh_database(db: Db) -> (String, PathBuf) {
    let dir = std::env::temp_dir().join(format!("furrow-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("furrow.db").display()),
        Db::Postgres => {
            sqlx::any::install_default_drivers();
            let admin = postgres_admin_url();
            let pool = sqlx::AnyPool::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL must be reachable at {admin} for the PostgreSQL tests: {e}")
            });
            let name = format!("furrow_test_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
    };
    (url, dir)
}

pub struct TestApp {
    pub furrow: Running,
    pub sim: deere_sim::RunningSim,
    pub http: reqwest::Client,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub settings: Settings,
    pub token: String,
}

/// Settings for tests: quick engine, quick health checks, the simulator as John Deere.
pub fn test_settings(
    sim: &deere_sim::RunningSim,
    database_url: &str,
    data_dir: &std::path::Path,
) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        database_url: Some(database_url.to_string()),
        deere_auth_url: sim.issuer_url(),
        deere_stage_api_url: sim.platform_url().to_string(),
        deere_production_api_url: sim.platform_url().to_string(),
        engine_poll_ms: 50,
        health_check_interval_secs: 1,
        token_exchange_timeout_secs: 5,
        ..Settings::default()
    }
}

pub async fn spawn(db: Db) -> TestApp {
    spawn_with(db, |_| {}).await
}

pub async fn spawn_with(db: Db, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_with_sim(db, deere_sim::SimConfig::default(), adjust).await
}

/// furrow beside a simulator started with `config` (its world's size, its latency).
pub async fn spawn_with_sim(
    db: Db,
    config: deere_sim::SimConfig,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let sim = deere_sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (database_url, data_dir) = fresh_database(db).await;
    let mut settings = test_settings(&sim, &database_url, &data_dir);
    adjust(&mut settings);
    let furrow = furrow::app::start(settings.clone()).await.unwrap();
    furrow::api::auth::create_owner(
        &furrow.state.store,
        "owner@example.com",
        "correct horse battery",
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let mut app = TestApp {
        furrow,
        sim,
        http,
        database_url,
        data_dir,
        settings,
        token: String::new(),
    };
    app.token = app
        .login("owner@example.com", "correct horse battery")
        .await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.furrow.base_url())
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .http
            .post(self.url("/api/authenticate"))
            .json(&json!({"username": email, "password": password, "rememberMe": "false"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["id_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A request as the test's owner (or with `token`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.token.clone(), method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn create_user(&self, name: &str) -> String {
        let (status, user) = self
            .call(
                Method::POST,
                "/services/usermanagement/api/users",
                Some(json!({"name": name, "email": format!("{name}@example.com")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        user["id"].as_str().unwrap().to_string()
    }

    /// A refresh token for a simulated grower, as if they had consented.
    pub fn grower_refresh_token(&self, user: &str, scopes: &[&str]) -> String {
        self.sim
            .issue_tokens("sim-client", user, scopes)
            .unwrap()
            .refresh_token
            .unwrap()
    }

    pub async fn post_credentials(
        &self,
        user_id: &str,
        refresh_token: &str,
        env: &str,
    ) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/services/usermanagement/api/users/{user_id}/john-deere-credentials"),
            Some(json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": refresh_token, "clientEnvironment": env})),
        )
        .await
    }

    pub async fn credential(&self, user_id: &str) -> (StatusCode, Value) {
        self.call(
            Method::GET,
            &format!("/services/usermanagement/api/users/{user_id}/john-deere-credentials"),
            None,
        )
        .await
    }

    pub async fn events(&self, user_id: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("/services/usermanagement/api/users/{user_id}/john-deere-credentials/events?size=100"), None).await
    }

    /// Polls the credential until its status is `status` (the engine works in the background).
    pub async fn wait_for_status(&self, user_id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let (_, c) = self.credential(user_id).await;
            if c["status"] == status {
                return c;
            }
            last = c;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("credential never reached {status}; last: {last}");
    }

    /// Polls the user's sync status until it is `DONE` (up to 20 s); the last status seen.
    pub async fn wait_for_sync_done(&self, user_id: &str) -> Value {
        let mut sync = Value::Null;
        for _ in 0..400 {
            sync = self
                .call(
                    Method::GET,
                    &format!("/services/fields/api/users/{user_id}/fields/sync"),
                    None,
                )
                .await
                .1;
            if sync["state"] == "DONE" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sync
    }

    /// Asks for a sync now (`POST …/fields/sync`) and waits (up to 20 s) until a run that
    /// started after the ask is DONE, not the one already running then or finished before:
    /// that run's status.
    pub async fn sync_now(&self, user_id: &str) -> Value {
        let path = format!("/services/fields/api/users/{user_id}/fields/sync");
        let (status, asked) = self.call(Method::POST, &path, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{asked}");
        let mut sync = Value::Null;
        for _ in 0..400 {
            sync = self.call(Method::GET, &path, None).await.1;
            assert_ne!(sync["state"], "FAILED", "{sync}");
            if sync["state"] == "DONE" && sync["startedTime"] != asked["startedTime"] {
                return sync;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no sync run after the ask finished; last status: {sync}");
    }

    /// The user's fields (up to 100), with more query parameters in `extra` (`&includeDeleted=true`).
    pub async fn fields(&self, user: &str, extra: &str) -> Vec<Value> {
        let (status, fields) = self
            .call(
                Method::GET,
                &format!("/services/fields/api/fields?leafUserId={user}&size=100{extra}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{fields}");
        fields.as_array().unwrap().clone()
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/__admin/{path}", self.sim.root_url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_success());
        response.json().await.unwrap_or(Value::Null)
    }

    pub async fn finish(self) {
        self.furrow.shutdown().await;
        self.sim.shutdown().await;
        drop_database(&self.database_url, &self.data_dir).await;
    }
}

/// Removes what [`fresh_database`] made: the PostgreSQL database, and the data directory. A
/// test that passes leaves nothing behind on the machine's PostgreSQL server.
pub async fn drop_database(url: &str, data_dir: &std::path::Path) {
    if url.starts_with("postgres") {
        let name = url.rsplit('/').next().unwrap().to_string();
        let pool = sqlx::AnyPool::connect(&postgres_admin_url()).await.unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
        pool.close().await;
    }
    let _ = std::fs::remove_dir_all(data_dir);
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub fail_next: Arc<AtomicUsize>,
    pub got: Arc<Mutex<Vec<(String, String)>>>,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    if r.fail_next.load(Ordering::SeqCst) > 0 {
        r.fail_next.fetch_sub(1, Ordering::SeqCst);
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    let sig = headers
        .get("x-leaf-signature")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    r.got.lock().unwrap().push((sig, body));
    axum::http::StatusCode::OK
}

/// A webhook receiver on loopback: what it got, `(signature, body)`, and how many calls to fail.
pub async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/alerts", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

/// Polls `check` for up to 20 s (CI runs every test binary on two loaded cores).
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

impl Receiver {
    /// Alerts received of one `type`.
    pub fn count(&self, event_type: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, body)| {
                serde_json::from_str::<Value>(body).is_ok_and(|b| b["type"] == event_type)
            })
            .count()
    }
}
