//! deere-sim: a John Deere Operations Center simulator.
//!
//! One HTTP server plays every John Deere host furrow talks to:
//! - `/oauth2/{serverId}/...`: the (Okta) authorization server: metadata, authorize page, token,
//!   revocation;
//! - `/platform/...`: the Operations Center API (HAL links, matrix paging, `x-deere-signature`,
//!   Errors bodies, files with ranges, the `/fieldOps` shapefile export, event subscriptions);
//! - `/connections/...`: the page where a grower approves organizations for an app;
//! - `/presigned/...`: pre-signed download URLs (reject an `Authorization` header);
//! - `/__admin/...`: a test and demo API (create growers and tokens, change data, inject faults,
//!   read the request log).
//!
//! Start it in-process with [`start`] on port 0, or run the `deere-sim` binary.

// Handlers return `Result<_, Response>` so that an early `?` can answer with John Deere's exact
// error shape; a response is larger than clippy likes in an `Err`, which is fine for a simulator.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub mod admin;
mod content;
pub mod export;
mod oauth;
mod pipeline;
mod platform;
pub mod render;
mod webhooks;
pub mod world;

pub use world::{OrgSpec, World, WorldSize};

/// Okta authorization server id of John Deere's production issuer.
pub const DEFAULT_SERVER_ID: &str = "aus78tnlaysMraFhC1t7";

/// Settings that can be changed while the simulator runs (`PATCH /__admin/settings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// Access token lifetime (`expires_in`).
    pub token_ttl_secs: u64,
    /// Issue a new refresh token on every refresh and invalidate the old one.
    pub rotate_refresh_tokens: bool,
    /// With rotation: a reused old refresh token revokes the whole grant (Okta's behaviour).
    pub reuse_detection: bool,
    /// With rotation: a rotated-out refresh token still works for this many seconds (Okta's
    /// grace period for token rotation); 0 = never.
    pub rotation_grace_secs: u64,
    /// Refresh responses carry no `refresh_token` (the old one stays valid).
    pub omit_refresh_token_on_refresh: bool,
    /// Added to every request.
    pub latency_ms: u64,
    /// Requests per second per client key (token bucket, burst = rate); `None` = unlimited.
    pub rate_limit_per_sec: Option<f64>,
    pub default_page_size: usize,
    pub max_page_size: usize,
    /// How many times `/fieldOps/{id}` answers 202 before the 307.
    pub export_polls: u32,
    pub presign_ttl_secs: u64,
    /// Points in an operation's shapefile export unless the operation says otherwise.
    pub export_points: usize,
    /// Units of an export asked for without `Accept-UOM-System` (the organization's
    /// preference): `ENGLISH` or `METRIC`.
    pub export_units: String,
    /// Tillage exports are made (John Deere's documentation says 406 for tillage).
    pub export_tillage: bool,
    /// Delivery attempts per webhook batch before it is given up.
    pub webhook_max_attempts: u32,
    /// Delay before the first redelivery; doubles each attempt.
    pub webhook_retry_ms: u64,
    /// Deliver every batch twice (receivers must be idempotent).
    pub duplicate_deliveries: bool,
    /// How an unconnected org answers data calls: `forbidden` (403) or `empty` (200, no values).
    pub unconnected_behaviour: UnconnectedBehaviour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnconnectedBehaviour {
    Forbidden,
    Empty,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            token_ttl_secs: 43_200,
            rotate_refresh_tokens: false,
            reuse_detection: false,
            omit_refresh_token_on_refresh: false,
            rotation_grace_secs: 0,
            latency_ms: 0,
            rate_limit_per_sec: None,
            default_page_size: 10,
            max_page_size: 100,
            export_polls: 2,
            presign_ttl_secs: 3600,
            export_points: 400,
            export_units: "ENGLISH".into(),
            export_tillage: false,
            webhook_max_attempts: 5,
            webhook_retry_ms: 1000,
            duplicate_deliveries: false,
            unconnected_behaviour: UnconnectedBehaviour::Forbidden,
        }
    }
}

/// Everything needed to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub world: WorldSize,
    pub settings: Settings,
    pub server_id: String,
    /// The app registered at start; the seeded world's orgs are connected to it.
    pub client_key: String,
    pub client_secret: String,
    /// Base URL to put in links instead of `http://{bound address}` (behind a proxy).
    pub public_url: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            world: WorldSize::default(),
            settings: Settings::default(),
            server_id: DEFAULT_SERVER_ID.into(),
            client_key: "sim-client".into(),
            client_secret: "sim-secret".into(),
            public_url: None,
        }
    }
}

/// An application registered with the simulator.
#[derive(Debug, Clone)]
pub struct App {
    pub secret: String,
    /// `eventSubscriptionDelivery`: sent verbatim as `Authorization` on deliveries.
    pub authorization_header_value: Option<String>,
    pub delivery_paused: bool,
    /// Licensed for the Data Subscription Service ("Webhook Read/Write"); without it,
    /// `/eventSubscriptions` answers 403.
    pub webhook_access: bool,
    /// Redirect URIs registered on developer.deere.com; the authorize page refuses any other.
    /// Empty: any (the simulator's default, so tests need not register one).
    pub redirect_uris: Vec<String>,
}

impl App {
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            authorization_header_value: None,
            delivery_paused: false,
            webhook_access: true,
            redirect_uris: Vec::new(),
        }
    }
}

/// One issued token and what it grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub grant_id: u64,
    pub client_key: String,
    pub user: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessGrant {
    pub grant: Grant,
    pub expires_at: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct CodeGrant {
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub expires_at: Instant,
}

/// One line of the request log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub id: u64,
    pub method: String,
    /// Path with matrix parameters and query.
    pub path: String,
    pub status: u16,
    pub client_key: Option<String>,
    pub user: Option<String>,
    /// Whether the request carried a non-blank `x-deere-signature`.
    pub signature_sent: bool,
    /// Whether the request carried an `Authorization` header.
    pub authorization_sent: bool,
    /// Milliseconds since the simulator started, when the request arrived.
    pub at_ms: u64,
    pub duration_ms: u64,
}

/// A fault to inject. Every `Option` in the target narrows it; `times` limits how often it fires.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    #[serde(default)]
    pub client_key: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
    /// Substring of the path (e.g. `/fields`, `/v1/token`).
    #[serde(default)]
    pub path_contains: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    pub kind: FaultKind,
    /// Fire this many times, then disappear; absent = until removed.
    #[serde(default)]
    pub times: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum FaultKind {
    /// Any status with an Errors body; with `retryAfter` a `Retry-After` header.
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// 429 Too Many Requests (with `Retry-After` unless null).
    RateLimit {
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Extra delay before answering.
    Latency { ms: u64 },
    /// Headers are sent, then the connection is cut mid-body.
    ConnectionReset,
    /// The request is handled normally (a refresh token may rotate), then the response body is
    /// cut: the caller never learns the result, as if it had crashed before storing it.
    DropResponse,
    /// Required customer action: 403 with `X-Deere-Warning` and `X-Deere-Terms-Location`.
    RequiredCustomerAction,
    /// 403 "The client does not have a proper access for this API".
    MissingScope,
    /// 401: the app is not licensed for this endpoint.
    Unlicensed,
    /// 200 with no values on collection reads (staff lacking a permission level).
    EmptyList,
    /// Token endpoint: 400 `invalid_grant`.
    InvalidGrant,
    /// Token endpoint: 401 `invalid_client`.
    InvalidClient,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub fired: u32,
}

/// A stored event subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub client_key: String,
    pub user: String,
    pub event_type_id: String,
    pub filters: Vec<(String, Vec<String>)>,
    pub target_uri: String,
    pub status: String,
    pub display_name: Option<String>,
    pub token: Option<String>,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub subscription_id: String,
    pub target: String,
    pub attempt: u32,
    pub events: usize,
    /// HTTP status, or `None` when the receiver could not be reached.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at_ms: u64,
}

pub(crate) struct SigRec {
    pub key: String,
    pub seq: u64,
}

pub(crate) struct Presigned {
    pub op_id: String,
    pub export: export::ExportRequest,
    pub created: Instant,
}

pub(crate) struct Bucket {
    pub tokens: f64,
    pub last: Instant,
}

/// All mutable state, behind one lock that is never held across an await.
pub struct SimState {
    pub world: World,
    pub settings: Settings,
    pub apps: HashMap<String, App>,
    pub(crate) codes: HashMap<String, CodeGrant>,
    pub(crate) access_tokens: HashMap<String, AccessGrant>,
    pub(crate) refresh_tokens: HashMap<String, Grant>,
    /// Refresh tokens replaced by rotation (grant id, when): reuse is detectable, and within
    /// the grace period still honoured.
    pub(crate) rotated_out: HashMap<String, (u64, Instant)>,
    pub(crate) revoked_grants: HashSet<u64>,
    next_grant: u64,
    pub(crate) signatures: HashMap<String, SigRec>,
    pub faults: Vec<Fault>,
    next_fault: u64,
    pub log: Vec<LogEntry>,
    pub(crate) log_seq: u64,
    pub deliveries: Vec<DeliveryRecord>,
    pub subscriptions: BTreeMap<String, Subscription>,
    pub(crate) export_polls: HashMap<String, u32>,
    pub(crate) presigned: HashMap<String, Presigned>,
    pub(crate) buckets: HashMap<String, Bucket>,
    pub(crate) file_cache: HashMap<String, Bytes>,
    pub(crate) exports: export::ExportCache,
}

impl SimState {
    pub(crate) fn new_grant(&mut self, client_key: &str, user: &str, scopes: Vec<String>) -> Grant {
        self.next_grant += 1;
        Grant {
            grant_id: self.next_grant,
            client_key: client_key.into(),
            user: user.into(),
            scopes,
        }
    }

    /// Revokes every token of every grant `user` gave `client_key` (the grower removed the app).
    pub fn revoke_user_grants(&mut self, client_key: &str, user: &str) -> usize {
        let ids: HashSet<u64> = self
            .refresh_tokens
            .values()
            .chain(self.access_tokens.values().map(|a| &a.grant))
            .filter(|g| g.client_key == client_key && g.user == user)
            .map(|g| g.grant_id)
            .collect();
        self.revoke_grants(&ids);
        ids.len()
    }

    pub(crate) fn revoke_grants(&mut self, ids: &HashSet<u64>) {
        self.refresh_tokens
            .retain(|_, g| !ids.contains(&g.grant_id));
        self.access_tokens
            .retain(|_, a| !ids.contains(&a.grant.grant_id));
        self.revoked_grants.extend(ids.iter().copied());
    }

    pub fn add_fault(&mut self, spec: FaultSpec) -> u64 {
        self.next_fault += 1;
        self.faults.push(Fault {
            id: self.next_fault,
            spec,
            fired: 0,
        });
        self.next_fault
    }
}

pub(crate) struct SimInner {
    pub root: String,
    pub base: String,
    pub server_id: String,
    pub started: Instant,
    pub state: Mutex<SimState>,
    pub http: reqwest::Client,
}

/// A handle on a simulator. Cheap to clone.
#[derive(Clone)]
pub struct Sim(pub(crate) Arc<SimInner>);

impl Sim {
    fn new(config: &SimConfig, root: String) -> Self {
        let world = World::seeded(config.seed, &config.world, &config.client_key);
        let mut apps = HashMap::new();
        apps.insert(
            config.client_key.clone(),
            App::new(config.client_secret.clone()),
        );
        let state = SimState {
            world,
            settings: config.settings.clone(),
            apps,
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            rotated_out: HashMap::new(),
            revoked_grants: HashSet::new(),
            next_grant: 0,
            signatures: HashMap::new(),
            faults: Vec::new(),
            next_fault: 0,
            log: Vec::new(),
            log_seq: 0,
            deliveries: Vec::new(),
            subscriptions: BTreeMap::new(),
            export_polls: HashMap::new(),
            presigned: HashMap::new(),
            buckets: HashMap::new(),
            file_cache: HashMap::new(),
            exports: export::ExportCache::default(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("static reqwest configuration is valid");
        Self(Arc::new(SimInner {
            base: format!("{root}/platform"),
            root,
            server_id: config.server_id.clone(),
            started: Instant::now(),
            state: Mutex::new(state),
            http,
        }))
    }

    /// Locks the state. A poisoned lock (a panic elsewhere) is recovered: the simulator keeps
    /// serving rather than failing every later request.
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://host:port`.
    pub fn root_url(&self) -> &str {
        &self.0.root
    }

    /// `http://host:port/platform`.
    pub fn platform_url(&self) -> &str {
        &self.0.base
    }

    /// `http://host:port/oauth2/{serverId}`.
    pub fn issuer_url(&self) -> String {
        format!("{}/oauth2/{}", self.0.root, self.0.server_id)
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.0.started.elapsed().as_millis() as u64
    }

    pub(crate) fn links(&self) -> render::Links<'_> {
        render::Links {
            base: &self.0.base,
            root: &self.0.root,
        }
    }

    /// Issues tokens as if `user` had consented to `client_key` (what the admin API does).
    pub fn issue_tokens(
        &self,
        client_key: &str,
        user: &str,
        scopes: &[&str],
    ) -> Result<oauth::IssuedTokens, String> {
        let mut state = self.state();
        if !state.apps.contains_key(client_key) {
            return Err(format!("unknown client key {client_key}"));
        }
        if !state.world.users.contains_key(user) {
            return Err(format!("unknown user {user}"));
        }
        let scopes = oauth::granted_scopes(&state, user, scopes.iter().map(|s| s.to_string()));
        let grant = state.new_grant(client_key, user, scopes);
        Ok(oauth::issue(&mut state, grant))
    }

    /// The request log so far.
    pub fn requests(&self) -> Vec<LogEntry> {
        self.state().log.clone()
    }
}

/// A running simulator; dropping it does not stop the server, [`RunningSim::shutdown`] does.
pub struct RunningSim {
    pub sim: Sim,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server stops (for the binary).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

impl std::ops::Deref for RunningSim {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

/// Binds `addr` (port 0 for any free port) and serves the simulator in the background.
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<RunningSim> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let root = config
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{addr}"));
    let sim = Sim::new(&config, root);
    let router = pipeline::router(sim.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(err) = serve.await {
            tracing::error!(%err, "simulator server failed");
        }
    });
    Ok(RunningSim {
        sim,
        addr,
        shutdown: Some(tx),
        task,
    })
}
