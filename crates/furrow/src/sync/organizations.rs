//! Keeping a credential's organization list current.

use deere::models::Organization;
use deere::AccessToken;
use secrecy::ExposeSecret;

use crate::app::AppState;
use crate::domain::credential::{ClientEnvironment, CredentialStatus};
use crate::domain::organization::merge;
use crate::store::{CredentialRecord, OrganizationRecord, StoreError};

/// Merges John Deere's list into the stored one (see [`merge`]).
pub async fn store(
    state: &AppState,
    credential_id: &str,
    orgs: &[Organization],
) -> Result<(), StoreError> {
    let previous = state.store.organizations(credential_id).await?;
    let merged = merge(&previous, orgs);
    state
        .store
        .replace_organizations(credential_id, &merged)
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error("the credentials are {0}; post new credentials first")]
    NotUsable(String),
    #[error("John Deere did not answer: {0}")]
    Upstream(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
}

/// Re-reads the organizations from John Deere now (`POST …/organizations/sync`).
pub async fn resync(
    state: &AppState,
    cred: &CredentialRecord,
) -> Result<Vec<OrganizationRecord>, ResyncError> {
    let usable = cred.status != CredentialStatus::Unauthenticated.as_str();
    let Some(access_enc) = cred.access_token_enc.as_deref().filter(|_| usable) else {
        return Err(ResyncError::NotUsable(cred.status.clone()));
    };
    let access = state.keyring.decrypt(access_enc)?;
    let secret = state.keyring.decrypt(&cred.client_secret_enc)?;
    let environment =
        ClientEnvironment::parse(&cred.environment).unwrap_or(ClientEnvironment::Stage);
    let session = state
        .deere
        .session(environment, &cred.client_key, secret.clone());
    let outcome = session
        .api
        .organizations(&AccessToken::new(access.expose_secret()))
        .await;
    let secrets = [secret.expose_secret(), access.expose_secret()];
    let events = session.take_events(&secrets);
    if !events.is_empty() {
        state.store.add_events(&cred.id, &events).await?;
    }
    let orgs = outcome.map_err(|e| ResyncError::Upstream(e.to_string()))?;
    store(state, &cred.id, &orgs).await?;
    Ok(state.store.organizations(&cred.id).await?)
}
