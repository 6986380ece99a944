//! Connecting a grower's John Deere account in a browser: John Deere's consent page (OAuth 2.0
//! authorization code with PKCE), then its connections page (the organizations the app may
//! see), then back to the application.
//!
//! Safety: the OAuth `state` is single use, bound to its owner, Leaf user and expiry, and stored
//! only hashed; the flow is bound to the browser that started it by a random cookie (only its
//! hash is stored), so a callback carried to another browser is refused (login CSRF); the code
//! is exchanged server-side with the PKCE verifier, so the refresh token never reaches the
//! application or the browser.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use deere::{DeereError, Pkce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

use crate::app::AppState;
use crate::domain::credential::{ClientEnvironment, CredentialStatus, REQUIRED_SCOPES};
use crate::store::{
    content_hash, leaf_time_now, now_ms, FlowPhase, NewEvent, OAuthFlowRecord, OrganizationRecord,
    StoreError,
};
use crate::sync::credentials::{store_new, NewCredential};

/// The one provider furrow connects.
pub const JOHN_DEERE: &str = "JohnDeere";
/// Providers Leaf knows: named in a request, they get a clear "not supported" rather than
/// "unknown".
pub const LEAF_PROVIDERS: [&str; 7] = [
    "JohnDeere",
    "ClimateFieldView",
    "CNHI",
    "AgLeader",
    "Trimble",
    "RavenSlingshot",
    "Stara",
];
/// How long a grower has from getting an authorization URL (or opening a magic link) to
/// coming back from John Deere's consent page.
pub const FLOW_TTL_MS: i64 = 30 * 60 * 1000;
/// The cookie that binds a flow to the browser that started it.
pub const BROWSER_COOKIE: &str = "furrow_connect";

/// A John Deere app and what to ask the grower for.
pub struct FlowApp {
    pub client_key: String,
    pub client_secret: SecretString,
    pub environment: ClientEnvironment,
    /// Empty: [`REQUIRED_SCOPES`]. `offline_access` is always added.
    pub scopes: Vec<String>,
}

/// A flow for one Leaf user of one owner.
pub struct NewFlow {
    pub owner_id: String,
    pub leaf_user_id: String,
    pub app: FlowApp,
    pub return_url: Option<Url>,
    pub magic_link_id: Option<String>,
}

/// Why a flow cannot go on; each says what happened in words a grower understands.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("This link does not exist or was deleted. Ask for a new one.")]
    LinkNotFound,
    #[error("This link has expired. Ask for a new one.")]
    LinkExpired,
    #[error("This link has already been used as many times as it allows. Ask for a new one.")]
    LinkUsedUp,
    #[error("This sign-in is not known here: the address may be incomplete or altered. Start again from your link.")]
    UnknownFlow,
    #[error("This sign-in was started in another browser. Open your link again in this browser.")]
    WrongBrowser,
    #[error("This sign-in has already been used. Start again from your link.")]
    AlreadyUsed,
    #[error("This sign-in took too long and has expired. Start again from your link.")]
    Expired,
    #[error(
        "John Deere did not say what happened (no authorization code). Start again from your link."
    )]
    MissingCode,
    #[error(
        "You did not allow access to your John Deere account ({error}). Nothing was connected."
    )]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error(
        "John Deere did not answer in time. Nothing was connected; try again in a few minutes."
    )]
    Upstream(String),
    #[error("John Deere did not accept this sign-in ({0}). Start again from your link.")]
    CodeRejected(String),
    #[error("John Deere rejected the application's key or secret ({0}). The application's owner must check its John Deere app registration.")]
    AppRejected(String),
    #[error("John Deere did not grant offline access, so the connection could not be kept. Start again and allow every permission asked for.")]
    NoRefreshToken,
    #[error("John Deere did not accept the new connection ({0}). The app may be registered for another environment (STAGE or PRODUCTION) than your account.")]
    CredentialsRejected(String),
    #[error("Something went wrong on our side; it has been logged. Try again in a few minutes.")]
    Internal(String),
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<crate::crypto::CryptoError> for FlowError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<crate::sync::credentials::CredentialError> for FlowError {
    fn from(e: crate::sync::credentials::CredentialError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl FlowError {
    /// The OAuth-style code an application's return URL receives.
    pub fn code(&self) -> &str {
        match self {
            Self::Denied { error, .. } => error,
            Self::LinkNotFound | Self::UnknownFlow => "invalid_request",
            Self::LinkExpired | Self::Expired => "expired",
            Self::LinkUsedUp | Self::AlreadyUsed => "already_used",
            Self::WrongBrowser => "wrong_browser",
            Self::MissingCode | Self::CodeRejected(_) => "invalid_grant",
            Self::AppRejected(_) => "invalid_client",
            Self::Upstream(_) => "temporarily_unavailable",
            Self::NoRefreshToken => "offline_access_not_granted",
            Self::CredentialsRejected(_) => "credentials_rejected",
            Self::Internal(_) => "server_error",
        }
    }

    /// Whether the application's return URL hears of it: failures of a flow the grower was
    /// really in. Tampering, reuse and a wrong browser stay on furrow's page: the request
    /// cannot be trusted to speak for the flow.
    fn goes_back_to_app(&self) -> bool {
        matches!(
            self,
            Self::Denied { .. }
                | Self::MissingCode
                | Self::Upstream(_)
                | Self::CodeRejected(_)
                | Self::AppRejected(_)
                | Self::NoRefreshToken
                | Self::CredentialsRejected(_)
        )
    }
}

/// An organization as the outcome lists it.
#[derive(Debug, Clone, Serialize)]
pub struct OrgRef {
    pub id: String,
    pub name: String,
}

/// How a flow ended, for the application and for the grower's page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowOutcome {
    pub leaf_user_id: String,
    /// The credential's status (`OK`, `MISSING_PERMISSION`, …) when credentials were stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub connected: Vec<OrgRef>,
    pub not_connected: Vec<OrgRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// What the browser is shown or sent to next.
pub enum Next {
    Redirect(String),
    Finished {
        flow: OAuthFlowRecord,
        outcome: FlowOutcome,
    },
    Failed {
        flow: Option<OAuthFlowRecord>,
        error: FlowError,
    },
}

/// 32 random bytes, URL-safe.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The scopes to ask for: the given ones (or furrow's required set) and `offline_access`.
pub fn scopes_to_ask(given: &[String]) -> Vec<String> {
    let mut scopes: Vec<String> = if given.is_empty() {
        REQUIRED_SCOPES.iter().map(|s| s.to_string()).collect()
    } else {
        given.to_vec()
    };
    if !scopes.iter().any(|s| s == "offline_access") {
        scopes.push("offline_access".into());
    }
    scopes
}

/// John Deere scopes for what an application asks: Leaf's product scopes (`FIELDS:READ`, …,
/// as Leaf's app keys and URL helper take them) or John Deere's own (`ag1`, …). Order kept,
/// duplicates dropped.
pub fn deere_scopes(given: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for scope in given {
        let own = [scope.as_str()];
        let mapped: &[&str] = match scope.as_str() {
            "FIELDS:READ" | "PRODUCTS:READ" | "ZONES:READ" => &["ag1"],
            "FIELDS:WRITE" => &["ag1", "ag3"],
            "OPERATIONS:READ" => &["ag2", "files"],
            "PRESCRIPTION:READ" => &["files"],
            "PRESCRIPTION:WRITE" => &["files", "ag3"],
            "ASSETS:READ" => &["eq1"],
            s if !s.is_empty()
                && s.len() <= 32
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') =>
            {
                &own
            }
            other => {
                return Err(format!(
                    "unknown scope {other:?}: use Leaf's (FIELDS:READ, FIELDS:WRITE, OPERATIONS:READ, \
                     PRESCRIPTION:READ, PRESCRIPTION:WRITE, ASSETS:READ, PRODUCTS:READ, ZONES:READ) \
                     or John Deere's (ag1, ag2, ag3, eq1, files, org1, offline_access, …)"
                ))
            }
        };
        for s in mapped {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
    }
    Ok(out)
}

/// Where John Deere sends the grower back after consent (register it on the app).
pub fn callback_url(state: &AppState) -> String {
    format!(
        "{}/connect/john-deere/callback",
        state.settings.public_url()
    )
}

/// The link a grower opens.
pub fn magic_link_url(state: &AppState, id: &str) -> String {
    format!("{}/connect/{id}", state.settings.public_url())
}

/// The URL an application sends its grower to for a flow made through the API.
pub fn start_url(state: &AppState, flow_id: &str) -> String {
    format!(
        "{}/connect/john-deere/start/{flow_id}",
        state.settings.public_url()
    )
}

fn flow_record(state: &AppState, new: &NewFlow, phase: FlowPhase) -> OAuthFlowRecord {
    OAuthFlowRecord {
        id: uuid::Uuid::new_v4().to_string(),
        // Replaced when the browser starts; until then nothing can match it.
        state_hash: content_hash(&random_secret()),
        browser_hash: None,
        owner_id: new.owner_id.clone(),
        leaf_user_id: new.leaf_user_id.clone(),
        magic_link_id: new.magic_link_id.clone(),
        client_key: new.app.client_key.clone(),
        client_secret_enc: state.keyring.encrypt(new.app.client_secret.expose_secret()),
        client_environment: new.app.environment.as_str().into(),
        scopes: scopes_to_ask(&new.app.scopes).join(" "),
        pkce_verifier_enc: String::new(),
        return_url: new.return_url.as_ref().map(Url::to_string),
        phase: phase.as_str().into(),
        outcome: None,
        created_at: leaf_time_now(),
        expires_at_ms: now_ms() + FLOW_TTL_MS,
    }
}

/// A flow handed out by the API: the grower's browser starts it at [`start_url`].
pub async fn create_flow(state: &AppState, new: NewFlow) -> Result<OAuthFlowRecord, StoreError> {
    let flow = flow_record(state, &new, FlowPhase::New);
    state.store.insert_flow(&flow).await?;
    Ok(flow)
}

/// John Deere's consent URL for a flow with this state and PKCE challenge.
fn authorize_url(
    state: &AppState,
    flow: &OAuthFlowRecord,
    oauth_state: &str,
    pkce: &Pkce,
) -> Result<Url, FlowError> {
    let environment = ClientEnvironment::parse(&flow.client_environment)
        .ok_or_else(|| FlowError::Internal("stored environment unreadable".into()))?;
    let secret = state.keyring.decrypt(&flow.client_secret_enc)?;
    let session = state
        .deere
        .session(environment, &flow.client_key, secret, &flow.leaf_user_id);
    let scopes: Vec<&str> = flow.scopes.split_whitespace().collect();
    Ok(session
        .oauth
        .authorize_url(&callback_url(state), &scopes, oauth_state, Some(pkce)))
}

/// Opening a magic link's "continue" button: one use of the link, a new flow bound to this
/// browser, and John Deere's consent URL.
pub async fn start_from_link(
    state: &AppState,
    link_id: &str,
    browser_hash: &str,
) -> Result<Url, FlowError> {
    let link = state
        .store
        .magic_link(None, link_id)
        .await?
        .ok_or(FlowError::LinkNotFound)?;
    check_link_usable(link.expires_at_ms, link.usage_count, link.max_usage)?;
    let key = state
        .store
        .app_key_by_id(&link.app_key_id)
        .await?
        .ok_or(FlowError::LinkNotFound)?;
    let environment = ClientEnvironment::parse(&key.client_environment)
        .ok_or_else(|| FlowError::Internal("stored environment unreadable".into()))?;
    let new = NewFlow {
        owner_id: link.owner_id.clone(),
        leaf_user_id: link.leaf_user_id.clone(),
        app: FlowApp {
            client_key: key.client_key.clone(),
            client_secret: state.keyring.decrypt(&key.client_secret_enc)?,
            environment,
            scopes: key.scopes.split_whitespace().map(str::to_string).collect(),
        },
        return_url: link.return_url.as_deref().and_then(|u| Url::parse(u).ok()),
        magic_link_id: Some(link.id.clone()),
    };
    let mut flow = flow_record(state, &new, FlowPhase::Authorizing);
    let oauth_state = random_secret();
    let pkce = Pkce::generate();
    flow.state_hash = content_hash(&oauth_state);
    flow.pkce_verifier_enc = state.keyring.encrypt(pkce.verifier.expose_secret());
    flow.browser_hash = Some(browser_hash.to_string());
    let url = authorize_url(state, &flow, &oauth_state, &pkce)?;
    if !state.store.start_magic_link_flow(&flow).await? {
        // Another open of the link took its last use, or it expired meanwhile.
        let link = state
            .store
            .magic_link(None, link_id)
            .await?
            .ok_or(FlowError::LinkNotFound)?;
        check_link_usable(link.expires_at_ms, link.usage_count, link.max_usage)?;
        return Err(FlowError::LinkUsedUp);
    }
    Ok(url)
}

/// Whether a magic link can still start a flow.
pub fn check_link_usable(expires_at_ms: i64, usage: i64, max_usage: i64) -> Result<(), FlowError> {
    if expires_at_ms <= now_ms() {
        Err(FlowError::LinkExpired)
    } else if usage >= max_usage {
        Err(FlowError::LinkUsedUp)
    } else {
        Ok(())
    }
}

/// The browser arrives at a flow the API handed out: bind it, and on to John Deere.
pub async fn start_from_api(
    state: &AppState,
    flow_id: &str,
    browser_hash: &str,
) -> Result<Url, FlowError> {
    let flow = state
        .store
        .flow(flow_id)
        .await?
        .ok_or(FlowError::UnknownFlow)?;
    if flow.phase != FlowPhase::New.as_str() {
        return Err(FlowError::AlreadyUsed);
    }
    if flow.expires_at_ms <= now_ms() {
        return Err(FlowError::Expired);
    }
    let oauth_state = random_secret();
    let pkce = Pkce::generate();
    let url = authorize_url(state, &flow, &oauth_state, &pkce)?;
    let started = state
        .store
        .authorize_flow(
            &flow.id,
            &content_hash(&oauth_state),
            &state.keyring.encrypt(pkce.verifier.expose_secret()),
            browser_hash,
        )
        .await?;
    if !started {
        return Err(FlowError::AlreadyUsed);
    }
    Ok(url)
}

/// What John Deere's authorization server sends back.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// John Deere sends the grower back: check the flow, exchange the code, store the credentials
/// as `POST …/john-deere-credentials` does, then on to the connections page if an organization
/// still needs the grower's approval.
pub async fn callback(
    state: &AppState,
    params: CallbackParams,
    browser_hash: Option<&str>,
) -> Next {
    let flow = match callback_flow(state, &params, browser_hash).await {
        Ok(flow) => flow,
        Err(error) => return Next::Failed { flow: None, error },
    };
    match exchange(state, &flow, params).await {
        Ok(next) => next,
        Err(error) => fail(state, flow, error).await,
    }
}

/// Whether this browser (its cookie's hash) is the one that started the flow.
fn started_in(flow: &OAuthFlowRecord, browser_hash: Option<&str>) -> bool {
    flow.browser_hash.is_some() && flow.browser_hash.as_deref() == browser_hash
}

/// The flow a callback belongs to, taken (once) for the exchange.
async fn callback_flow(
    state: &AppState,
    params: &CallbackParams,
    browser_hash: Option<&str>,
) -> Result<OAuthFlowRecord, FlowError> {
    let oauth_state = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or(FlowError::UnknownFlow)?;
    let flow = state
        .store
        .flow_by_state(&content_hash(oauth_state))
        .await?
        .ok_or(FlowError::UnknownFlow)?;
    if !started_in(&flow, browser_hash) {
        return Err(FlowError::WrongBrowser);
    }
    if flow.phase != FlowPhase::Authorizing.as_str() {
        return Err(FlowError::AlreadyUsed);
    }
    if flow.expires_at_ms <= now_ms() {
        let outcome = error_outcome(&flow, &FlowError::Expired);
        state
            .store
            .advance_flow(
                &flow.id,
                FlowPhase::Authorizing,
                FlowPhase::Failed,
                None,
                Some(&outcome),
            )
            .await?;
        return Err(FlowError::Expired);
    }
    if !state
        .store
        .advance_flow(
            &flow.id,
            FlowPhase::Authorizing,
            FlowPhase::Exchanging,
            None,
            None,
        )
        .await?
    {
        return Err(FlowError::AlreadyUsed);
    }
    Ok(flow)
}

async fn exchange(
    state: &AppState,
    flow: &OAuthFlowRecord,
    params: CallbackParams,
) -> Result<Next, FlowError> {
    if let Some(error) = params.error {
        return Err(FlowError::Denied {
            error: error.chars().take(64).collect(),
            description: params
                .error_description
                .map(|d| d.chars().take(300).collect()),
        });
    }
    let code = params
        .code
        .filter(|c| !c.is_empty())
        .ok_or(FlowError::MissingCode)?;
    let environment = ClientEnvironment::parse(&flow.client_environment)
        .ok_or_else(|| FlowError::Internal("stored environment unreadable".into()))?;
    let client_secret = state.keyring.decrypt(&flow.client_secret_enc)?;
    let verifier = state.keyring.decrypt(&flow.pkce_verifier_enc)?;
    let session = state.deere.session(
        environment,
        &flow.client_key,
        client_secret.clone(),
        &flow.leaf_user_id,
    );
    let timeout = Duration::from_secs(state.settings.token_exchange_timeout_secs.max(1));
    let exchanged = tokio::time::timeout(
        timeout,
        session
            .oauth
            .exchange_code(&code, &callback_url(state), Some(&verifier)),
    )
    .await
    .unwrap_or_else(|_| {
        Err(DeereError::Transient {
            reason: deere::TransientReason::Interrupted,
            detail: "token exchange timed out".into(),
        })
    });
    let tokens = match exchanged {
        Ok(tokens) => tokens,
        Err(e) => {
            let secrets = [client_secret.expose_secret(), code.as_str()];
            let events = session.take_events(&secrets);
            record_on_existing(state, flow, events).await;
            return Err(match e {
                DeereError::InvalidGrant { description } => FlowError::CodeRejected(description),
                DeereError::InvalidClient { description } => FlowError::AppRejected(description),
                other => FlowError::Upstream(other.to_string()),
            });
        }
    };
    let Some(refresh_token) = tokens.refresh_token.as_ref() else {
        return Err(FlowError::NoRefreshToken);
    };
    let input = NewCredential {
        client_key: flow.client_key.clone(),
        client_secret,
        refresh_token: SecretString::from(refresh_token.expose().to_string()),
        environment,
    };
    let record = store_new(state, &flow.leaf_user_id, &session, input, Ok(tokens)).await?;
    if record.status == CredentialStatus::Unauthenticated.as_str() {
        return Err(FlowError::CredentialsRejected(
            record.status_reason.unwrap_or_default(),
        ));
    }
    let orgs = state.store.organizations(&record.id).await?;
    if let Some(connect) = connections_page(state, flow, &orgs) {
        state
            .store
            .advance_flow(
                &flow.id,
                FlowPhase::Exchanging,
                FlowPhase::Connecting,
                None,
                None,
            )
            .await?;
        return Ok(Next::Redirect(connect));
    }
    finish(state, flow, FlowPhase::Exchanging, &record.status, &orgs).await
}

/// John Deere's connections page for the first organization the app may not see yet, with
/// furrow as the place to come back to.
fn connections_page(
    state: &AppState,
    flow: &OAuthFlowRecord,
    orgs: &[OrganizationRecord],
) -> Option<String> {
    let uri = orgs
        .iter()
        .filter(|o| !o.connected)
        .find_map(|o| o.management_uri.as_deref())?;
    let mut url = Url::parse(uri)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))?;
    let back = format!(
        "{}/connect/john-deere/organizations/{}",
        state.settings.public_url(),
        flow.id
    );
    url.query_pairs_mut().append_pair("redirect_uri", &back);
    Some(url.to_string())
}

/// Back from John Deere's connections page: read the organizations again, start syncing the
/// newly connected ones, and end the flow.
pub async fn organizations_chosen(
    state: &AppState,
    flow_id: &str,
    browser_hash: Option<&str>,
) -> Next {
    let flow = match state.store.flow(flow_id).await {
        Ok(Some(flow)) => flow,
        Ok(None) => {
            return Next::Failed {
                flow: None,
                error: FlowError::UnknownFlow,
            }
        }
        Err(e) => {
            return Next::Failed {
                flow: None,
                error: e.into(),
            }
        }
    };
    if !started_in(&flow, browser_hash) {
        return Next::Failed {
            flow: None,
            error: FlowError::WrongBrowser,
        };
    }
    if flow.phase != FlowPhase::Connecting.as_str() {
        return Next::Failed {
            flow: None,
            error: FlowError::AlreadyUsed,
        };
    }
    match reread_organizations(state, &flow).await {
        Ok(next) => next,
        Err(error) => fail(state, flow, error).await,
    }
}

async fn reread_organizations(state: &AppState, flow: &OAuthFlowRecord) -> Result<Next, FlowError> {
    let cred = state
        .store
        .credential_of_user(&flow.owner_id, &flow.leaf_user_id)
        .await?
        .ok_or_else(|| FlowError::Internal("the new credentials are gone".into()))?;
    let orgs = match crate::sync::organizations::resync(state, &cred).await {
        Ok(orgs) => orgs,
        Err(e) => {
            tracing::warn!(flow = %flow.id, error = %e, "organizations not re-read after the connections page");
            state.store.organizations(&cred.id).await?
        }
    };
    state.store.wake_job(&cred.id, "sync").await?;
    finish(state, flow, FlowPhase::Connecting, &cred.status, &orgs).await
}

async fn finish(
    state: &AppState,
    flow: &OAuthFlowRecord,
    from: FlowPhase,
    status: &str,
    orgs: &[OrganizationRecord],
) -> Result<Next, FlowError> {
    let org_ref = |o: &OrganizationRecord| OrgRef {
        id: o.provider_org_id.clone(),
        name: o.name.clone(),
    };
    let outcome = FlowOutcome {
        leaf_user_id: flow.leaf_user_id.clone(),
        status: Some(status.to_string()),
        connected: orgs.iter().filter(|o| o.connected).map(org_ref).collect(),
        not_connected: orgs.iter().filter(|o| !o.connected).map(org_ref).collect(),
        error: None,
        error_description: None,
    };
    let json = serde_json::to_string(&outcome).unwrap_or_default();
    state
        .store
        .advance_flow(&flow.id, from, FlowPhase::Done, None, Some(&json))
        .await?;
    record_on_existing(state, flow, vec![attempt_event(&outcome)]).await;
    Ok(match &flow.return_url {
        Some(url) => Next::Redirect(return_with(url, &outcome)),
        None => Next::Finished {
            flow: flow.clone(),
            outcome,
        },
    })
}

/// A failed flow: recorded on the flow and in the user's credential events (when there is a
/// credential), then back to the application when it should hear of it.
async fn fail(state: &AppState, flow: OAuthFlowRecord, error: FlowError) -> Next {
    if let FlowError::Internal(cause) = &error {
        tracing::error!(flow = %flow.id, %cause, "connection flow failed");
    }
    let outcome_json = error_outcome(&flow, &error);
    for from in [FlowPhase::Exchanging, FlowPhase::Connecting] {
        if let Err(e) = state
            .store
            .advance_flow(&flow.id, from, FlowPhase::Failed, None, Some(&outcome_json))
            .await
        {
            tracing::warn!(flow = %flow.id, error = %e, "flow failure not recorded");
        }
    }
    let outcome = failure_outcome(&flow, &error);
    record_on_existing(state, &flow, vec![attempt_event(&outcome)]).await;
    match (&flow.return_url, error.goes_back_to_app()) {
        (Some(url), true) => Next::Redirect(return_with(url, &outcome)),
        _ => Next::Failed {
            flow: Some(flow),
            error,
        },
    }
}

fn failure_outcome(flow: &OAuthFlowRecord, error: &FlowError) -> FlowOutcome {
    FlowOutcome {
        leaf_user_id: flow.leaf_user_id.clone(),
        status: None,
        connected: Vec::new(),
        not_connected: Vec::new(),
        error: Some(error.code().to_string()),
        error_description: Some(error.to_string()),
    }
}

fn error_outcome(flow: &OAuthFlowRecord, error: &FlowError) -> String {
    serde_json::to_string(&failure_outcome(flow, error)).unwrap_or_default()
}

/// The application's return URL with the outcome as query parameters: `leafUserId`, then
/// `status`, `connected` and `notConnected` (comma-separated organization ids), or `error` and
/// `error_description`.
fn return_with(url: &str, outcome: &FlowOutcome) -> String {
    let Ok(mut url) = Url::parse(url) else {
        return url.to_string();
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("leafUserId", &outcome.leaf_user_id);
        match (&outcome.error, &outcome.status) {
            (Some(error), _) => {
                q.append_pair("error", error);
                if let Some(d) = &outcome.error_description {
                    q.append_pair("error_description", d);
                }
            }
            (None, status) => {
                let ids = |orgs: &[OrgRef]| {
                    orgs.iter()
                        .map(|o| o.id.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                q.append_pair("status", status.as_deref().unwrap_or(""));
                q.append_pair("connected", &ids(&outcome.connected));
                q.append_pair("notConnected", &ids(&outcome.not_connected));
            }
        }
    }
    url.to_string()
}

/// A credential event telling what a browser connection attempt came to.
fn attempt_event(outcome: &FlowOutcome) -> NewEvent {
    NewEvent::note(serde_json::json!({
        "type": "connectionAttempt",
        "outcome": if outcome.error.is_some() { "FAILED" } else { "CONNECTED" },
        "error": outcome.error,
        "errorDescription": outcome.error_description,
        "connectedOrganizations": outcome.connected.iter().map(|o| &o.id).collect::<Vec<_>>(),
        "notConnectedOrganizations": outcome.not_connected.iter().map(|o| &o.id).collect::<Vec<_>>(),
    }))
}

/// Adds events to the user's credential, if there is one (a first connection that failed has
/// none: the flow itself keeps the outcome).
async fn record_on_existing(state: &AppState, flow: &OAuthFlowRecord, events: Vec<NewEvent>) {
    let cred = match state
        .store
        .credential_of_user(&flow.owner_id, &flow.leaf_user_id)
        .await
    {
        Ok(Some(cred)) => cred,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(flow = %flow.id, error = %e, "credential not read for its events");
            return;
        }
    };
    if let Err(e) = state.store.add_events(&cred.id, &events).await {
        tracing::warn!(flow = %flow.id, error = %e, "connection attempt not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(error: Option<&str>) -> FlowOutcome {
        FlowOutcome {
            leaf_user_id: "u1".into(),
            status: error.is_none().then(|| "OK".into()),
            connected: vec![OrgRef {
                id: "11".into(),
                name: "A".into(),
            }],
            not_connected: vec![
                OrgRef {
                    id: "12".into(),
                    name: "B".into(),
                },
                OrgRef {
                    id: "13".into(),
                    name: "C".into(),
                },
            ],
            error: error.map(str::to_string),
            error_description: error.map(|_| "refused & gone".to_string()),
        }
    }

    #[test]
    fn return_url_keeps_the_apps_own_query_and_adds_the_outcome() {
        let url = return_with("https://app.example/back?session=abc", &outcome(None));
        let parsed = Url::parse(&url).unwrap();
        let q: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("session".into(), "abc".into()));
        assert!(q.contains(&("connected".into(), "11".into())));
        assert!(q.contains(&("notConnected".into(), "12,13".into())));
        assert!(q.contains(&("status".into(), "OK".into())));
        let failed = return_with("https://app.example/back", &outcome(Some("access_denied")));
        let q: Vec<(String, String)> = Url::parse(&failed)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert!(q.contains(&("error".into(), "access_denied".into())));
        assert!(q.contains(&("error_description".into(), "refused & gone".into())));
        assert!(!q.iter().any(|(k, _)| k == "connected"));
    }

    #[test]
    fn leaf_scopes_map_to_john_deeres() {
        let given = ["FIELDS:READ", "OPERATIONS:READ", "ag1", "eq2"].map(String::from);
        assert_eq!(
            deere_scopes(&given).unwrap(),
            vec!["ag1", "ag2", "files", "eq2"]
        );
        assert!(deere_scopes(&["FIELDS:DELETE".to_string()]).is_err());
        assert!(deere_scopes(&["ag1 ag2".to_string()]).is_err());
    }

    #[test]
    fn offline_access_is_always_asked_for() {
        assert_eq!(
            scopes_to_ask(&[]),
            vec!["ag1", "ag2", "files", "offline_access"]
        );
        assert_eq!(
            scopes_to_ask(&["ag1".to_string()]),
            vec!["ag1", "offline_access"]
        );
    }

    #[test]
    fn a_link_is_usable_only_before_expiry_and_below_its_use_limit() {
        let later = now_ms() + 60_000;
        assert!(check_link_usable(later, 0, 3).is_ok());
        assert!(matches!(
            check_link_usable(later, 3, 3),
            Err(FlowError::LinkUsedUp)
        ));
        assert!(matches!(
            check_link_usable(now_ms() - 1, 0, 3),
            Err(FlowError::LinkExpired)
        ));
    }
}
