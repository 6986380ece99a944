//! Shared set-up: a simulator on port 0 and clients pointed at it.
#![allow(dead_code)]

use std::time::Duration;

use deere::{AccessToken, ApiClient, HttpSettings, OAuthClient, RefreshToken, RetryPolicy};
use deere_sim::{RunningSim, SimConfig};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;

pub struct Harness {
    pub sim: RunningSim,
    pub http: reqwest::Client,
    pub api: ApiClient,
    pub oauth: OAuthClient,
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    }
}

pub async fn start(config: SimConfig) -> Harness {
    let sim = deere_sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts");
    let http = HttpSettings::default().build_client().unwrap();
    let api = ApiClient::new(http.clone(), Url::parse(sim.platform_url()).unwrap())
        .with_retry(fast_retry());
    let oauth = OAuthClient::new(
        http.clone(),
        &Url::parse(&sim.issuer_url()).unwrap(),
        "sim-client",
        SecretString::from("sim-secret".to_string()),
    )
    .unwrap()
    .with_retry(fast_retry());
    Harness {
        sim,
        http,
        api,
        oauth,
    }
}

impl Harness {
    /// Calls the admin API and returns its JSON.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/__admin/{path}", self.sim.root_url());
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin call");
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "admin {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Creates a grower with the given orgs and returns (user, org ids).
    pub async fn grower(&self, user: &str, orgs: Value) -> Vec<String> {
        let created = self
            .admin(
                reqwest::Method::POST,
                "growers",
                Some(json!({"userName": user, "organizations": orgs})),
            )
            .await;
        created["organizationIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// Tokens for `user` on the default app.
    pub async fn tokens(
        &self,
        user: &str,
        scope: Option<&str>,
    ) -> (AccessToken, Option<RefreshToken>) {
        let mut body = json!({"userName": user});
        if let Some(scope) = scope {
            body["scope"] = json!(scope);
        }
        let t = self
            .admin(reqwest::Method::POST, "tokens", Some(body))
            .await;
        (
            AccessToken::new(t["access_token"].as_str().unwrap()),
            t["refresh_token"].as_str().map(RefreshToken::new),
        )
    }

    pub async fn fault(&self, spec: Value) {
        self.admin(reqwest::Method::POST, "faults", Some(spec))
            .await;
    }

    pub async fn settings(&self, patch: Value) {
        self.admin(reqwest::Method::PATCH, "settings", Some(patch))
            .await;
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}/{path}", self.sim.platform_url())).unwrap()
    }

    /// Request log entries whose path contains `needle`.
    pub fn log_for(&self, needle: &str) -> Vec<deere_sim::LogEntry> {
        self.sim
            .requests()
            .into_iter()
            .filter(|e| e.path.contains(needle))
            .collect()
    }
}
