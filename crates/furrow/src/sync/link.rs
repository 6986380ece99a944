//! furrow's side of the John Deere connection: clients per credential whose raw exchanges are
//! collected and turned into redacted credential events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deere::{AccessToken, ApiClient, Exchange, HttpSettings, OAuthClient, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::app::AppState;
use crate::config::Settings;
use crate::domain::credential::ClientEnvironment;
use crate::domain::credential::CredentialStatus;
use crate::domain::redact::{redact_body, redact_headers};
use crate::store::{CredentialRecord, NewEvent, Store, StoreResult};
use crate::sync::pacing::{RateBudgets, RateLimitsError};

/// The configured John Deere hosts and one shared HTTP client.
#[derive(Debug, Clone)]
pub struct DeereHosts {
    http: reqwest::Client,
    issuer: Url,
    stage: Url,
    production: Url,
    retry: RetryPolicy,
    /// Each client key's shared request budget.
    budgets: RateBudgets,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("invalid John Deere URL setting {name}: {value}")]
    Url { name: &'static str, value: String },
    #[error(transparent)]
    RateLimits(#[from] RateLimitsError),
}

impl DeereHosts {
    pub fn from_settings(settings: &Settings, store: Store) -> Result<Self, HostError> {
        let parse = |name: &'static str, value: &str| {
            Url::parse(value).map_err(|_| HostError::Url {
                name,
                value: value.to_string(),
            })
        };
        let http = HttpSettings {
            request_timeout: Duration::from_secs(settings.token_exchange_timeout_secs.max(1)),
            ..HttpSettings::default()
        }
        .build_client()
        .map_err(|_| HostError::Url {
            name: "http client",
            value: String::new(),
        })?;
        Ok(Self {
            http,
            issuer: parse("FURROW_DEERE_AUTH_URL", &settings.deere_auth_url)?,
            stage: parse("FURROW_DEERE_STAGE_API_URL", &settings.deere_stage_api_url)?,
            production: parse(
                "FURROW_DEERE_PRODUCTION_API_URL",
                &settings.deere_production_api_url,
            )?,
            retry: RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(5),
                max_retry_after: Duration::from_secs(10),
            },
            budgets: RateBudgets::from_settings(settings, store)?,
        })
    }

    /// How long `account` has been using `client_key`'s request budget: the newest accounts'
    /// work goes ahead of the others' at the database, and settled accounts' gives way (see
    /// [`RateBudgets::standing`]).
    pub fn standing(&self, client_key: &str, account: &str) -> crate::sync::pacing::Standing {
        self.budgets.standing(client_key, account)
    }

    /// `account` is connecting with `client_key` (see [`RateBudgets::connecting`]).
    pub fn connecting(&self, client_key: &str, account: &str) {
        self.budgets.connecting(client_key, account);
    }

    /// Whether `account` holds `client_key`'s budget now (see [`RateBudgets::holds`]).
    pub fn holds_budget(&self, client_key: &str, account: &str) -> bool {
        self.budgets.holds(client_key, account)
    }

    /// Whether `account` has requests waiting for `client_key`'s budget now, `None` when the
    /// key is not paced (see [`RateBudgets::has_waiting`]).
    pub fn budget_has_waiting(&self, client_key: &str, account: &str) -> Option<bool> {
        self.budgets.has_waiting(client_key, account)
    }

    /// `account`'s first data is stored, or it will have none (see
    /// [`RateBudgets::release_hold`]).
    pub fn release_hold(&self, client_key: &str, account: &str) {
        self.budgets.release_hold(client_key, account);
    }

    /// Asks, each time it is called, whether `account` is still one of the newest accounts
    /// to use `client_key`'s request budget ([`crate::sync::pacing::Standing::Newest`]).
    pub fn still_newest(
        &self,
        client_key: &str,
        account: &str,
    ) -> impl Fn() -> bool + Send + Sync + 'static {
        let budgets = self.budgets.clone();
        let (client_key, account) = (client_key.to_string(), account.to_string());
        move || budgets.standing(&client_key, &account) == crate::sync::pacing::Standing::Newest
    }

    /// Clients for one account's (Leaf user's) credential, paced by its client key's budget.
    /// Everything they exchange is kept for the event log.
    pub fn session(
        &self,
        environment: ClientEnvironment,
        client_key: &str,
        client_secret: SecretString,
        account: &str,
    ) -> Session {
        let exchanges: Arc<Mutex<Vec<Exchange>>> = Arc::default();
        let sink = exchanges.clone();
        let observer: deere::Observer = Arc::new(move |exchange| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(exchange);
        });
        let base = match environment {
            ClientEnvironment::Stage => self.stage.clone(),
            ClientEnvironment::Production => self.production.clone(),
        };
        let mut oauth =
            OAuthClient::new(self.http.clone(), &self.issuer, client_key, client_secret)
                .expect("issuer URL was validated at start")
                .with_retry(self.retry.clone())
                .with_observer(observer.clone());
        let mut api = ApiClient::new(self.http.clone(), base)
            .with_retry(self.retry.clone())
            .with_observer(observer);
        if let Some(pacer) = self.budgets.pacer(client_key, account) {
            oauth = oauth.with_pacer(pacer.clone());
            api = api.with_pacer(pacer);
        }
        Session {
            oauth,
            api,
            exchanges,
        }
    }
}

pub struct Session {
    pub oauth: OAuthClient,
    pub api: ApiClient,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

impl Session {
    /// The exchanges so far, as redacted events (`secrets` are hidden wherever they appear).
    pub fn take_events(&self, secrets: &[&str]) -> Vec<NewEvent> {
        let taken = std::mem::take(&mut *self.exchanges.lock().unwrap_or_else(|e| e.into_inner()));
        taken
            .into_iter()
            .map(|x| {
                let body = match (&x.error, x.body.is_empty()) {
                    (Some(error), _) => serde_json::json!({"error": error}).to_string(),
                    (None, _) => x.body.clone(),
                };
                NewEvent {
                    method: Some(x.method.clone()),
                    url: Some(x.url.clone()),
                    status_code: x.status.map(i64::from),
                    headers: redact_headers(&x.headers, secrets),
                    body: redact_body(&body, secrets),
                }
            })
            .collect()
    }
}

/// A credential's session with its access token: what platform calls are made with.
pub struct Authorized {
    pub session: Session,
    pub token: AccessToken,
    /// The client secret and access token, hidden from recorded events.
    secrets: [SecretString; 2],
}

impl Authorized {
    /// `None` when the credential has no usable access token (UNAUTHENTICATED, or not yet
    /// exchanged).
    pub fn open(
        state: &AppState,
        cred: &CredentialRecord,
    ) -> Result<Option<Self>, crate::crypto::CryptoError> {
        let usable = cred.status != CredentialStatus::Unauthenticated.as_str();
        let Some(access_enc) = cred.access_token_enc.as_deref().filter(|_| usable) else {
            return Ok(None);
        };
        let access = state.keyring.decrypt(access_enc)?;
        let secret = state.keyring.decrypt(&cred.client_secret_enc)?;
        let environment =
            ClientEnvironment::parse(&cred.environment).unwrap_or(ClientEnvironment::Stage);
        let session = state.deere.session(
            environment,
            &cred.client_key,
            secret.clone(),
            &cred.leaf_user_id,
        );
        Ok(Some(Self {
            session,
            token: AccessToken::new(access.expose_secret()),
            secrets: [secret, access],
        }))
    }

    pub fn api(&self) -> &ApiClient {
        &self.session.api
    }

    /// Stores the exchanges so far as the credential's (redacted) events.
    pub async fn flush_events(&self, state: &AppState, credential_id: &str) -> StoreResult<()> {
        let [secret, access] = &self.secrets;
        let events = self
            .session
            .take_events(&[secret.expose_secret(), access.expose_secret()]);
        if !events.is_empty() {
            state.store.add_events(credential_id, &events).await?;
        }
        Ok(())
    }
}

/// An event describing a status change (no HTTP exchange of its own).
pub fn status_event(previous: Option<&str>, status: &str, reason: Option<&str>) -> NewEvent {
    NewEvent::note(serde_json::json!({
        "type": "statusChange", "previousStatus": previous, "status": status, "reason": reason,
    }))
}
