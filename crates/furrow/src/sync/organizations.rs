//! Keeping a credential's organization list current.

use deere::models::Organization;

use crate::app::AppState;
use crate::domain::organization::merge;
use crate::store::{CredentialRecord, OrganizationRecord, StoreError};
use crate::sync::link::Authorized;

/// Merges John Deere's list into the stored one (see [`merge`]), with the list's change
/// signature (URL, signature) if given, in one write.
pub async fn store(
    state: &AppState,
    credential_id: &str,
    orgs: &[Organization],
    signature: Option<&(String, String)>,
) -> Result<(), StoreError> {
    let previous = state.store.organizations(credential_id).await?;
    store_merged(state, credential_id, &previous, orgs, signature).await
}

/// [`store`] for credentials just posted: nothing stored yet to merge with, so nothing read
/// first (one wait fewer before a new grower's `POST` is answered). A row written meanwhile
/// keeps its status: the write follows the selection rules against the rows as they are.
pub async fn store_first(
    state: &AppState,
    credential_id: &str,
    orgs: &[Organization],
    signature: Option<&(String, String)>,
) -> Result<(), StoreError> {
    store_merged(state, credential_id, &[], orgs, signature).await
}

async fn store_merged(
    state: &AppState,
    credential_id: &str,
    previous: &[OrganizationRecord],
    orgs: &[Organization],
    signature: Option<&(String, String)>,
) -> Result<(), StoreError> {
    state
        .store
        .replace_organizations(credential_id, &merge(previous, orgs), signature)
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
    let Some(auth) = Authorized::open(state, cred)? else {
        return Err(ResyncError::NotUsable(cred.status.clone()));
    };
    let outcome = auth.api().organizations(&auth.token).await;
    auth.flush_events(state, &cred.id).await?;
    let orgs = outcome.map_err(|e| ResyncError::Upstream(e.to_string()))?;
    store(state, &cred.id, &orgs, None).await?;
    Ok(state.store.organizations(&cred.id).await?)
}
