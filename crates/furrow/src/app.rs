//! Builds the state, the router and the engine; binds the port and runs until stopped.

use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::auth::JwtKeys;
use crate::config::Settings;
use crate::crypto::{generate_key, Keyring};
use crate::store::Store;
use crate::sync::link::DeereHosts;

/// Shared by every handler and job. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub jwt: Arc<JwtKeys>,
    pub deere: DeereHosts,
    /// Machine files' bytes.
    pub files: crate::files::FileStore,
    /// Where owner-supplied URLs (alert webhooks) may lead.
    pub outbound: crate::outbound::OutboundPolicy,
    /// Identifies this replica in job leases.
    pub replica_id: String,
    /// Owners recently confirmed to exist (id → until, ms): spares a query per request.
    pub known_owners: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
    /// Wakes this replica's engine before its next poll (a slot freed, work or an alert due).
    pub wake: Arc<crate::sync::Wake>,
    /// The event types John Deere offers each client key (see `sync::webhooks`).
    pub event_types: crate::sync::webhooks::EventTypeCache,
    /// New credentials whose check, on this replica, has not yet stored their organizations.
    pub checks: crate::sync::credentials::ChecksInFlight,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error(transparent)]
    Hosts(#[from] crate::sync::link::HostError),
    #[error(transparent)]
    Files(#[from] crate::files::FileStoreError),
    #[error(transparent)]
    Outbound(#[from] crate::outbound::PolicyError),
    #[error("demo: {0}")]
    Demo(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl AppState {
    /// Opens the database (migrating it), the keyring and the instance secrets.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        std::fs::create_dir_all(&settings.data_dir).ok();
        let keyring = Keyring::load(settings.secret_key.as_deref(), &settings.data_dir)?;
        let store = Store::connect_with(
            &settings.database_url(),
            crate::store::PostgresConnections {
                bulk: settings.database_bulk_connections,
                ahead: settings.database_ahead_connections,
            },
        )
        .await?
        .with_credential_cache(settings.credential_cache_ms);
        store.migrate().await?;
        let jwt_enc = store
            .instance_secret("jwt_hmac_key", &keyring.encrypt(&generate_key()))
            .await?;
        let jwt = JwtKeys::new(keyring.decrypt(&jwt_enc)?.expose_secret().as_bytes());
        let deere = DeereHosts::from_settings(&settings, store.clone())?;
        let files = crate::files::FileStore::from_settings(&settings)?;
        let outbound = crate::outbound::OutboundPolicy::from_settings(&settings)?;
        Ok(Self {
            outbound,
            settings: Arc::new(settings),
            store,
            keyring: Arc::new(keyring),
            jwt: Arc::new(jwt),
            deere,
            files,
            replica_id: uuid::Uuid::new_v4().to_string(),
            known_owners: Arc::default(),
            event_types: Default::default(),
            checks: Default::default(),
            wake: Arc::default(),
        })
    }
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    engine: tokio::task::JoinHandle<()>,
    metrics: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests and stops the engine; waits for both.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.engine.await;
        if let Some(metrics) = self.metrics {
            let _ = metrics.await;
        }
    }

    /// Runs until Ctrl-C (or SIGTERM), then shuts down.
    pub async fn until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Binds `settings.listen` (port 0 for any) and runs the API and the engine in the background.
pub async fn start(mut settings: Settings) -> Result<Running, StartError> {
    let addr = settings.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    // Links we hand out must name the port actually bound (listen may say port 0).
    settings.listen = addr;
    let state = AppState::build(settings).await?;
    let (stop, stopped) = watch::channel(false);
    // The trailing-slash rewrite wraps the router so that it runs before routing.
    let app = tower::Layer::layer(
        &axum::middleware::map_request(crate::api::strip_trailing_slash),
        crate::api::router(state.clone()),
    );
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    let mut server_stop = stopped.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "server failed");
        }
    });
    let (metrics_addr, metrics) = match state.settings.metrics_listen {
        Some(at) => {
            let (bound, server) = crate::metrics::serve(at, state.clone(), stopped.clone())
                .await
                .map_err(|source| StartError::Bind { addr: at, source })?;
            (Some(bound), Some(server))
        }
        None => (None, None),
    };
    let engine = tokio::spawn(crate::sync::run_engine(state.clone(), stopped));
    Ok(Running {
        addr,
        metrics_addr,
        metrics,
        state,
        stop,
        server,
        engine,
    })
}

/// Re-encrypts every secret under the keyring's current key (after a rotation). Each row is
/// rewritten only if unchanged since it was read, so it can run while servers work.
pub async fn rewrap_all(store: &Store, keyring: &Keyring) -> Result<usize, StartError> {
    let mut rewrapped = 0;
    for c in store.all_credentials().await? {
        let current = [
            Some(&c.client_secret_enc),
            Some(&c.refresh_token_enc),
            c.access_token_enc.as_ref(),
        ]
        .into_iter()
        .flatten()
        .all(|enc| keyring.is_current(enc));
        if current {
            continue;
        }
        let rewrap = |enc: &str| -> Result<String, StartError> {
            Ok(keyring.encrypt(keyring.decrypt(enc)?.expose_secret()))
        };
        let access = c.access_token_enc.as_deref().map(rewrap).transpose()?;
        if store
            .rewrap_credential(
                &c,
                &rewrap(&c.client_secret_enc)?,
                &rewrap(&c.refresh_token_enc)?,
                access.as_deref(),
            )
            .await?
        {
            rewrapped += 1;
        }
    }
    for (table, id, column, enc) in store.onboarding_secrets().await? {
        // An empty verifier belongs to a flow whose browser has not started it yet.
        if enc.is_empty() || keyring.is_current(&enc) {
            continue;
        }
        let new = keyring.encrypt(keyring.decrypt(&enc)?.expose_secret());
        if store
            .rewrap_onboarding_secret(table, &id, column, &enc, &new)
            .await?
        {
            rewrapped += 1;
        }
    }
    for (name, enc) in store.instance_secrets().await? {
        if !keyring.is_current(&enc) {
            let new = keyring.encrypt(keyring.decrypt(&enc)?.expose_secret());
            if store.rewrap_instance_secret(&name, &enc, &new).await? {
                rewrapped += 1;
            }
        }
    }
    Ok(rewrapped)
}
