//! Keeping John Deere credentials alive and honest: validation on create, refresh before
//! expiry, periodic health checks, status changes with events.
//!
//! Invariant 1: a token response is stored (new access token and, when present, new refresh
//! token, in one transaction) before the access token is used. Invariant 2: only the holder of
//! the credential's job lease refreshes, after re-reading the credential, and writes with a
//! version check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deere::{AccessToken, DeereError, RefreshToken, TokenResponse};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::app::AppState;
use crate::domain::credential::{
    status_for_error, status_for_scopes, ClientEnvironment, CredentialStatus,
};
use crate::domain::redact::redact_values;
use crate::store::{
    now_ms, ClaimedJob, CredentialRecord, Deliveries, JobReschedule, NewEvent, StoreError,
    TokenWrite,
};
use crate::sync::link::{status_event, Session};
use crate::sync::webhooks::Unsubscribe;

/// Validated input of `POST …/john-deere-credentials`.
pub struct NewCredential {
    pub client_key: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    pub environment: ClientEnvironment,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored secret cannot be decrypted: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}

/// Secrets of one credential in memory, for calls and for redaction.
struct Secrets {
    client_secret: SecretString,
    refresh_token: SecretString,
    access_token: Option<SecretString>,
    /// Tokens seen during this run (new ones from responses), all hidden in events.
    seen: Vec<SecretString>,
}

impl Secrets {
    fn all(&self) -> Vec<&str> {
        let mut v = vec![
            self.client_secret.expose_secret(),
            self.refresh_token.expose_secret(),
        ];
        if let Some(at) = &self.access_token {
            v.push(at.expose_secret());
        }
        v.extend(self.seen.iter().map(|s| s.expose_secret()));
        v
    }

    fn remember(&mut self, tokens: &TokenResponse) {
        self.seen
            .push(SecretString::from(tokens.access_token.expose().to_string()));
        if let Some(rt) = &tokens.refresh_token {
            self.seen.push(SecretString::from(rt.expose().to_string()));
        }
    }
}

fn token_write(state: &AppState, tokens: &TokenResponse) -> TokenWrite {
    let (status, reason) = status_for_scopes(&tokens.scopes);
    let expires = tokens.expires_in.unwrap_or(Duration::from_secs(43_200));
    TokenWrite {
        access_token_enc: state.keyring.encrypt(tokens.access_token.expose()),
        access_expires_ms: now_ms() + expires.as_millis() as i64,
        refresh_token_enc: tokens
            .refresh_token
            .as_ref()
            .map(|rt| state.keyring.encrypt(rt.expose())),
        scopes: tokens.scopes.join(" "),
        status: status.as_str().into(),
        status_reason: reason,
    }
}

/// Which credentials a platform check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Credentials just posted: any event subscriptions they have were made moments ago by
    /// their first sync run, so the check leaves them alone. (Verifying them cost a request
    /// for nothing whenever the run got there first: a few growers in 500 connected at once.)
    /// Their organizations are the check's own, none refusing a sync yet: not read again.
    New,
    /// Credentials held for a while: their event subscriptions are verified too.
    Held,
}

/// Checks that the platform answers with this access token, and keeps the organization list it
/// returns; the status that follows.
async fn platform_check(
    state: &AppState,
    credential_id: &str,
    session: &Session,
    token: &AccessToken,
    scopes: &[String],
    checked: Checked,
) -> (CredentialStatus, Option<String>) {
    match session.api.organizations_signed(token).await {
        Ok((orgs, signature)) => {
            if let Err(e) =
                store_checked_organizations(state, credential_id, session, &orgs, signature, checked)
                    .await
            {
                tracing::warn!(credential = %credential_id, error = %e, "organizations not stored");
            }
            if checked == Checked::Held {
                crate::sync::webhooks::verify(state, credential_id, &session.api, token).await;
            }
            match (status_for_scopes(scopes), checked) {
                // New credentials' organizations were stored just now, none refusing yet.
                ((CredentialStatus::Ok, _), Checked::Held) => {
                    refused_by_an_organization(state, credential_id).await
                }
                (status, _) => status,
            }
        }
        Err(DeereError::Unauthorized { message }) => (
            CredentialStatus::Unauthenticated,
            Some(format!("the platform rejected a fresh access token ({message}): wrong environment or app not licensed")),
        ),
        Err(e) => {
            let (status, reason) = status_for_error(&e);
            (status, Some(reason))
        }
    }
}

/// Stores the organizations a check read with the collection's signature, in one write: a new
/// credential's first sync starts from them, and the next asks John Deere only for changes.
async fn store_checked_organizations(
    state: &AppState,
    credential_id: &str,
    session: &Session,
    orgs: &[deere::models::Organization],
    signature: Option<String>,
    checked: Checked,
) -> Result<(), StoreError> {
    use crate::sync::organizations::{store, store_first};
    let key = session.api.endpoint("organizations");
    let signature = match (signature, key) {
        (Some(signature), Ok(key)) => Some((key.to_string(), signature)),
        _ => None,
    };
    match checked {
        Checked::New => store_first(state, credential_id, orgs, signature.as_ref()).await,
        Checked::Held => store(state, credential_id, orgs, signature.as_ref()).await,
    }
}

/// MISSING_PERMISSION while an organization being synced refused its last sync (403: missing
/// scope or licence, terms to accept), which a successful sync of it clears; otherwise OK.
async fn refused_by_an_organization(
    state: &AppState,
    credential_id: &str,
) -> (CredentialStatus, Option<String>) {
    let orgs = state
        .store
        .organizations(credential_id)
        .await
        .unwrap_or_default();
    match orgs
        .iter()
        .filter(|o| o.status != crate::domain::organization::OrgStatus::Blocked.as_str())
        .find_map(|o| o.sync_error.as_ref().map(|e| (o, e)))
    {
        Some((org, error)) => (
            CredentialStatus::MissingPermission,
            Some(format!(
                "organization {} refused the sync: {error}",
                org.provider_org_id
            )),
        ),
        None => (CredentialStatus::Ok, None),
    }
}

/// A sync found an organization refusing access (403): an OK credential becomes
/// MISSING_PERMISSION now (with its event and alert), not only at the next health check.
pub async fn sync_refused(
    state: &AppState,
    credential_id: &str,
    reason: &str,
) -> Result<(), CredentialError> {
    // A token refresh may write the credential meanwhile (a new version): read it again and
    // retry, so the refusal is not lost to the race.
    for _ in 0..5 {
        let Some(cred) = state.store.credential(credential_id).await? else {
            return Ok(());
        };
        if cred.status != CredentialStatus::Ok.as_str() {
            return Ok(());
        }
        let status = CredentialStatus::MissingPermission.as_str();
        let events = vec![status_event(Some(&cred.status), status, Some(reason))];
        let alerts = status_alerts(state, &cred, status, Some(reason)).await?;
        if state
            .store
            .set_status(
                &cred.id,
                cred.version,
                status,
                Some(reason),
                &events,
                &alerts,
            )
            .await?
        {
            return Ok(());
        }
    }
    tracing::warn!(credential = %credential_id, "status not updated: the credential kept changing");
    Ok(())
}

/// New credentials whose check (made on this replica when they were posted) has not yet
/// stored their organizations. Their first sync job is due at once, so that its claim overlaps
/// the check; a first sync run claimed meanwhile waits here for the organizations rather than
/// read them from John Deere a second time.
#[derive(Clone, Default)]
pub struct ChecksInFlight(Arc<Mutex<HashMap<String, watch::Receiver<()>>>>);

/// A check in flight: it ends (and wakes those waiting) when dropped.
pub struct CheckInFlight {
    checks: ChecksInFlight,
    credential_id: String,
    _done: watch::Sender<()>,
}

impl ChecksInFlight {
    fn start(&self, credential_id: &str) -> CheckInFlight {
        let (done, waiting) = watch::channel(());
        self.lock().insert(credential_id.to_string(), waiting);
        CheckInFlight {
            checks: self.clone(),
            credential_id: credential_id.to_string(),
            _done: done,
        }
    }

    /// Waits (up to `limit`) for the credential's check if one is in flight here; `false` when
    /// there is none.
    pub async fn wait(&self, credential_id: &str, limit: Duration) -> bool {
        let Some(mut waiting) = self.lock().get(credential_id).cloned() else {
            return false;
        };
        // Never sent on: `changed` returns when the check's end drops the sender.
        let _ = tokio::time::timeout(limit, waiting.changed()).await;
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<()>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for CheckInFlight {
    fn drop(&mut self) {
        self.checks.lock().remove(&self.credential_id);
    }
}

/// Creates (or replaces) a user's credential: one token exchange, stored before use, then a
/// platform check. A credential John Deere rejects is still stored, with its status and
/// events saying why, so the application can show it.
pub async fn create(
    state: &AppState,
    leaf_user_id: &str,
    input: NewCredential,
) -> Result<CredentialRecord, CredentialError> {
    state.deere.connecting(&input.client_key, leaf_user_id);
    let session = state.deere.session(
        input.environment,
        &input.client_key,
        input.client_secret.clone(),
        leaf_user_id,
    );
    let timeout = Duration::from_secs(state.settings.token_exchange_timeout_secs.max(1));
    let refresh_token = RefreshToken::new(input.refresh_token.expose_secret());
    let refresh = async {
        tokio::time::timeout(timeout, session.oauth.refresh(&refresh_token))
            .await
            .unwrap_or_else(|_| {
                Err(DeereError::Transient {
                    reason: deere::TransientReason::Interrupted,
                    detail: "token exchange timed out".into(),
                })
            })
    };
    // The credentials being replaced are read while the token is exchanged: one wait fewer
    // on a new grower's way to its first data.
    let (outcome, unsubscribe) = tokio::join!(refresh, Unsubscribe::prepare(state, leaf_user_id));
    store_new_replacing(state, leaf_user_id, &session, input, outcome, unsubscribe).await
}

/// Stores a new credential from the outcome of its first token call (a refresh of the given
/// token, or the browser flow's code exchange, made through `session` so its exchanges become
/// the credential's first events), then checks the platform with the access token.
pub async fn store_new(
    state: &AppState,
    leaf_user_id: &str,
    session: &Session,
    input: NewCredential,
    outcome: Result<TokenResponse, DeereError>,
) -> Result<CredentialRecord, CredentialError> {
    state.deere.connecting(&input.client_key, leaf_user_id);
    let unsubscribe = Unsubscribe::prepare(state, leaf_user_id).await;
    store_new_replacing(state, leaf_user_id, session, input, outcome, unsubscribe).await
}

/// [`store_new`], given how to remove the subscriptions of the credentials it replaces (read
/// before the token call ended).
async fn store_new_replacing(
    state: &AppState,
    leaf_user_id: &str,
    session: &Session,
    input: NewCredential,
    outcome: Result<TokenResponse, DeereError>,
    unsubscribe: Option<Unsubscribe>,
) -> Result<CredentialRecord, CredentialError> {
    let mut secrets = Secrets {
        client_secret: input.client_secret.clone(),
        refresh_token: input.refresh_token.clone(),
        access_token: None,
        seen: Vec::new(),
    };
    let now = now_ms();
    let mut record = CredentialRecord {
        id: uuid::Uuid::new_v4().to_string(),
        leaf_user_id: leaf_user_id.to_string(),
        client_key: input.client_key.clone(),
        client_secret_enc: state.keyring.encrypt(input.client_secret.expose_secret()),
        refresh_token_enc: state.keyring.encrypt(input.refresh_token.expose_secret()),
        access_token_enc: None,
        access_expires_ms: None,
        scopes: String::new(),
        environment: input.environment.as_str().into(),
        status: String::new(),
        status_reason: None,
        created_at: crate::store::leaf_time_now(),
        last_refresh_ms: None,
        last_check_ms: Some(now),
        version: 1,
    };
    let tokens = match outcome {
        Ok(tokens) => {
            secrets.remember(&tokens);
            let write = token_write(state, &tokens);
            record.access_token_enc = Some(write.access_token_enc);
            record.access_expires_ms = Some(write.access_expires_ms);
            if let Some(rt) = write.refresh_token_enc {
                record.refresh_token_enc = rt;
            }
            record.scopes = write.scopes;
            record.status = write.status;
            record.status_reason = write.status_reason;
            record.last_refresh_ms = Some(now);
            Some(tokens)
        }
        Err(e) => {
            let (status, reason) = status_for_error(&e);
            record.status = status.as_str().into();
            record.status_reason = Some(reason);
            None
        }
    };
    let mut events = session.take_events(&secrets.all());
    if tokens.is_none() {
        events.push(status_event(
            None,
            &record.status,
            record.status_reason.as_deref(),
        ));
    }
    // Stored now, before the access token is used for anything.
    let next_run = next_run_ms(state, &record);
    let alerts = if tokens.is_none() {
        status_alerts(
            state,
            &record,
            &record.status,
            record.status_reason.as_deref(),
        )
        .await?
    } else {
        Vec::new()
    };
    // Its first sync job is due once stored: a run claimed before the check has stored the
    // organizations waits for them.
    let tokens_obtained = tokens.is_some();
    if !tokens_obtained {
        state
            .deere
            .release_hold(&record.client_key, &record.leaf_user_id);
    }
    let check = tokens_obtained.then(|| state.checks.start(&record.id));
    let replaced_subscriptions = state
        .store
        .replace_credential(&record, &events, next_run, &alerts)
        .await?;
    // The replaced credentials' subscriptions go; the new ones subscribe at their first sync.
    if let Some(u) = unsubscribe {
        u.spawn(replaced_subscriptions);
    }
    // Its first sync is due: started now, not at the engine's next poll (nor after the sync
    // runs waiting for a slot), and beside the check, whose organizations it waits for: its
    // claim and first reads are not on the grower's way to its first data, nor the check's
    // status write.
    if tokens_obtained {
        state.wake.first_run(crate::sync::FirstRun {
            credential_id: record.id.clone(),
            client_key: record.client_key.clone(),
            account: record.leaf_user_id.clone(),
        });
    } else {
        state.wake.notify();
    }

    if let Some(tokens) = tokens {
        let (status, reason) = platform_check(
            state,
            &record.id,
            session,
            &tokens.access_token,
            &tokens.scopes,
            Checked::New,
        )
        .await;
        drop(check);
        let mut events = session.take_events(&secrets.all());
        events.push(status_event(None, status.as_str(), reason.as_deref()));
        let alerts = status_alerts(state, &record, status.as_str(), reason.as_deref()).await?;
        if state
            .store
            .set_status(
                &record.id,
                record.version,
                status.as_str(),
                reason.as_deref(),
                &events,
                &alerts,
            )
            .await?
        {
            record.status = status.as_str().into();
            record.status_reason = reason;
        }
    }
    Ok(record)
}

/// The alerts telling the application about a credential that becomes UNAUTHENTICATED or
/// MISSING_PERMISSION, stored in the same transaction as the status.
async fn status_alerts(
    state: &AppState,
    cred: &CredentialRecord,
    status: &str,
    reason: Option<&str>,
) -> Result<Deliveries, StoreError> {
    crate::sync::alerts::credential_status_alerts(
        state,
        &cred.leaf_user_id,
        &cred.id,
        &cred.client_key,
        status,
        reason,
    )
    .await
}

/// When the credential's job should next run.
fn next_run_ms(state: &AppState, c: &CredentialRecord) -> i64 {
    let s = &state.settings;
    let now = now_ms();
    if c.status == CredentialStatus::Unauthenticated.as_str() {
        // Nothing to do until new credentials are posted (which makes a new job).
        return now + 365 * 24 * 3600 * 1000;
    }
    let margin = (s.refresh_margin_secs * 1000) as i64;
    let mut candidates = vec![
        c.last_refresh_ms.unwrap_or(now) + (s.max_refresh_interval_secs * 1000) as i64,
        c.last_check_ms.unwrap_or(now) + (s.health_check_interval_secs * 1000) as i64,
    ];
    if let Some(expires) = c.access_expires_ms {
        candidates.push(expires - margin);
    }
    candidates.into_iter().min().unwrap_or(now).max(now)
}

/// Backoff for a credential whose last attempt failed transiently.
fn retry_at_ms(attempts: i64) -> i64 {
    let secs = 1i64 << attempts.clamp(0, 8);
    now_ms() + secs.min(300) * 1000
}

/// Runs one claimed credential job. Returns `Err` only for storage trouble.
pub async fn maintain(state: &AppState, job: &ClaimedJob) -> Result<(), CredentialError> {
    // Re-read after taking the lease: another replica may have refreshed meanwhile.
    let Some(cred) = state.store.credential(&job.credential_id).await? else {
        return Ok(()); // deleted: its job went with it
    };
    if cred.status == CredentialStatus::Unauthenticated.as_str() {
        let next = next_run_ms(state, &cred);
        state
            .store
            .reschedule_job(&job.id, &state.replica_id, next, 0, None)
            .await?;
        return Ok(());
    }
    let environment =
        ClientEnvironment::parse(&cred.environment).unwrap_or(ClientEnvironment::Stage);
    let mut secrets = Secrets {
        client_secret: state.keyring.decrypt(&cred.client_secret_enc)?,
        refresh_token: state.keyring.decrypt(&cred.refresh_token_enc)?,
        access_token: cred
            .access_token_enc
            .as_deref()
            .map(|c| state.keyring.decrypt(c))
            .transpose()?,
        seen: Vec::new(),
    };
    let session = state.deere.session(
        environment,
        &cred.client_key,
        secrets.client_secret.clone(),
        &cred.leaf_user_id,
    );
    let s = &state.settings;
    let now = now_ms();
    let check_due = cred
        .last_check_ms
        .is_none_or(|c| c + (s.health_check_interval_secs * 1000) as i64 <= now);
    let mut refresh_due = secrets.access_token.is_none()
        || cred
            .access_expires_ms
            .is_none_or(|e| e - (s.refresh_margin_secs * 1000) as i64 <= now)
        || cred
            .last_refresh_ms
            .is_none_or(|r| r + (s.max_refresh_interval_secs * 1000) as i64 <= now)
        || cred.status == CredentialStatus::TemporarilyUnavailable.as_str();

    // The outcome to record; `None` when a refresh already stored everything.
    let mut outcome: Option<(CredentialStatus, Option<String>)> = None;
    if !refresh_due && check_due {
        let token = secrets
            .access_token
            .as_ref()
            .map(|t| AccessToken::new(t.expose_secret()));
        if let Some(token) = token {
            let (status, reason) = platform_check(
                state,
                &cred.id,
                &session,
                &token,
                &scopes_of(&cred),
                Checked::Held,
            )
            .await;
            if status == CredentialStatus::Unauthenticated {
                refresh_due = true; // the access token may just be dead; a refresh tells
            } else {
                outcome = Some((status, reason));
            }
        }
    }
    let mut current = cred.clone();
    if refresh_due {
        match session
            .oauth
            .refresh(&RefreshToken::new(secrets.refresh_token.expose_secret()))
            .await
        {
            Ok(tokens) => {
                crate::metrics::token_refresh("ok");
                secrets.remember(&tokens);
                let write = token_write(state, &tokens);
                let mut events = session.take_events(&secrets.all());
                if write.status != cred.status {
                    events.push(status_event(
                        Some(&cred.status),
                        &write.status,
                        write.status_reason.as_deref(),
                    ));
                }
                // What the row holds after the write, to schedule from without re-reading it.
                current.access_token_enc = Some(write.access_token_enc.clone());
                current.access_expires_ms = Some(write.access_expires_ms);
                current.last_refresh_ms = Some(now_ms());
                current.last_check_ms = current.last_refresh_ms;
                current.status = write.status.clone();
                current.scopes = write.scopes.clone();
                current.version += 1;
                // Without a health check to run, the job is released in the same transaction.
                let next = next_run_ms(state, &current);
                let reschedule = (!check_due).then_some(JobReschedule {
                    job_id: &job.id,
                    owner: &state.replica_id,
                    run_at_ms: next,
                });
                let alerts = if write.status != cred.status {
                    status_alerts(state, &cred, &write.status, write.status_reason.as_deref())
                        .await?
                } else {
                    Vec::new()
                };
                if !state
                    .store
                    .write_tokens(&cred.id, cred.version, &write, &events, reschedule, &alerts)
                    .await?
                {
                    return Ok(()); // deleted or replaced while we were refreshing: drop the result
                }
                if !check_due {
                    return Ok(());
                }
                outcome = Some(
                    platform_check(
                        state,
                        &cred.id,
                        &session,
                        &tokens.access_token,
                        &tokens.scopes,
                        Checked::Held,
                    )
                    .await,
                );
            }
            Err(e) => {
                let (status, reason) = status_for_error(&e);
                crate::metrics::token_refresh(refresh_failure(status));
                outcome = Some((status, Some(reason)));
            }
        }
    }
    finish(state, job, &current, &session, &secrets, outcome).await
}

/// A refresh failure's cause, as a metric label: the status it leads to.
fn refresh_failure(status: CredentialStatus) -> &'static str {
    match status {
        CredentialStatus::Unauthenticated => "refused",
        CredentialStatus::MissingPermission => "missing_permission",
        _ => "unavailable",
    }
}

fn scopes_of(c: &CredentialRecord) -> Vec<String> {
    c.scopes.split_whitespace().map(str::to_string).collect()
}

/// Records the outcome (status, with an event when it changed), then schedules the next run.
async fn finish(
    state: &AppState,
    job: &ClaimedJob,
    cred: &CredentialRecord,
    session: &Session,
    secrets: &Secrets,
    outcome: Option<(CredentialStatus, Option<String>)>,
) -> Result<(), CredentialError> {
    let all = secrets.all();
    let mut updated = cred.clone();
    let mut last_error = None;
    if let Some((status, reason)) = outcome {
        let reason = reason.map(|r| redact_values(&r, &all));
        let mut events: Vec<NewEvent> = session.take_events(&all);
        if cred.status != status.as_str() {
            events.push(status_event(
                Some(&cred.status),
                status.as_str(),
                reason.as_deref(),
            ));
            tracing::info!(credential = %cred.id, from = %cred.status, to = %status, "credential status changed");
        }
        let alerts = if cred.status != status.as_str() {
            status_alerts(state, cred, status.as_str(), reason.as_deref()).await?
        } else {
            Vec::new()
        };
        if !state
            .store
            .set_status(
                &cred.id,
                cred.version,
                status.as_str(),
                reason.as_deref(),
                &events,
                &alerts,
            )
            .await?
        {
            return Ok(());
        }
        updated.status = status.as_str().into();
        updated.last_check_ms = Some(now_ms());
        last_error = reason;
    }
    let (run_at, attempts) = if updated.status == CredentialStatus::TemporarilyUnavailable.as_str()
    {
        (retry_at_ms(job.attempts), job.attempts + 1)
    } else {
        (next_run_ms(state, &updated), 0)
    };
    state
        .store
        .reschedule_job(
            &job.id,
            &state.replica_id,
            run_at,
            attempts,
            last_error.as_deref(),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first sync run claimed during its credential's check waits for the check's end (and
    /// only then reads the organizations it stored); with no check in flight it does not wait.
    #[tokio::test]
    async fn a_run_waits_for_its_credentials_check_in_flight() {
        let checks = ChecksInFlight::default();
        assert!(!checks.wait("c1", Duration::from_secs(5)).await);

        let check = checks.start("c1");
        let waiter = {
            let checks = checks.clone();
            tokio::spawn(async move { checks.wait("c1", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "returned before the check ended");
        drop(check);
        let waited = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken when the check ended")
            .unwrap();
        assert!(waited);
        // Ended: nothing left to wait for.
        assert!(!checks.wait("c1", Duration::from_secs(5)).await);
    }
}
