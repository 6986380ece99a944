//! Sending a field a user created in furrow to the grower's John Deere organization (Leaf's
//! "upload a field to provider"): the field, then its boundary, then furrow records John
//! Deere's ids on the field so the next sync reads that field into it rather than adding a copy.

use deere::models::{NewBoundary, NewPolygon, NewRing, Point};
use deere::DeereError;

use crate::app::AppState;
use crate::store::{FieldRecord, StoreError};
use crate::sync::link::Authorized;

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    #[error(
        "the field came from John Deere; a field is never sent back to the provider it came from"
    )]
    FromJohnDeere,
    #[error("the field is already in John Deere (organization {org}, field {field})")]
    AlreadyWritten { org: String, field: String },
    #[error("organizationId {0} is not one of the user's connected John Deere organizations")]
    UnknownOrganization(String),
    #[error("the user has no working John Deere credentials")]
    NoCredentials,
    #[error("the field has no boundary to send")]
    NoBoundary,
    #[error("John Deere refused the field: {0}")]
    Refused(String),
    #[error("John Deere: {0}")]
    Deere(DeereError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
}

impl From<DeereError> for WriteBackError {
    fn from(e: DeereError) -> Self {
        match e {
            DeereError::Http {
                status: 400,
                message,
            } => Self::Refused(message),
            e @ (DeereError::Forbidden { .. }
            | DeereError::RequiredCustomerAction { .. }
            | DeereError::NotFound { .. }) => Self::Refused(e.to_string()),
            e => Self::Deere(e),
        }
    }
}

/// What John Deere now holds for the field.
#[derive(Debug, Clone)]
pub struct WrittenField {
    pub organization_id: String,
    pub provider_field_id: String,
    pub provider_boundary_id: String,
}

/// The last path segment of a John Deere URL (the id in a `Location`).
fn last_segment(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .unwrap_or_default()
}

/// A stored GeoJSON MultiPolygon as John Deere's boundary body.
fn boundary_body(name: &str, geometry: &str) -> Option<NewBoundary> {
    let value: serde_json::Value = serde_json::from_str(geometry).ok()?;
    let polygons: machine_data::geo::MultiPolygon =
        serde_json::from_value(value.get("coordinates")?.clone()).ok()?;
    let multipolygons = polygons
        .into_iter()
        .map(|rings| NewPolygon {
            kind: "Polygon",
            rings: rings
                .into_iter()
                .enumerate()
                .map(|(i, ring)| NewRing {
                    kind: "Ring",
                    ring_type: if i == 0 { "exterior" } else { "interior" },
                    passable: i == 0,
                    points: ring
                        .into_iter()
                        .map(|[lon, lat]| Point { lat, lon })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Some(NewBoundary {
        name: name.chars().take(20).collect(),
        source_type: "External".into(),
        active: true,
        multipolygons,
    })
}

/// Creates `field` (a user's own) with its active boundary in John Deere organization `org`
/// and links it. Checks first, so nothing is sent that would be refused here.
pub async fn write_field(
    state: &AppState,
    owner: &str,
    field: &FieldRecord,
    org: &str,
) -> Result<WrittenField, WriteBackError> {
    if field.origin != "Leaf" {
        return Err(WriteBackError::FromJohnDeere);
    }
    if !field.organization_id.is_empty() {
        return Err(WriteBackError::AlreadyWritten {
            org: field.organization_id.clone(),
            field: field.provider_field_id.clone(),
        });
    }
    let cred = state
        .store
        .credential_of_user(owner, &field.leaf_user_id)
        .await?
        .ok_or(WriteBackError::NoCredentials)?;
    let connected = state
        .store
        .organizations(&cred.id)
        .await?
        .into_iter()
        .any(|o| o.provider_org_id == org && o.connected);
    if !connected {
        return Err(WriteBackError::UnknownOrganization(org.to_string()));
    }
    let boundary = state
        .store
        .boundaries_of(&field.id)
        .await?
        .into_iter()
        .find(|b| b.status == "ACTIVE")
        .and_then(|b| boundary_body(&field.name, &b.geometry))
        .ok_or(WriteBackError::NoBoundary)?;
    let auth = Authorized::open(state, &cred)?.ok_or(WriteBackError::NoCredentials)?;
    // Claimed first: a second request for the same field is a 409, and John Deere's event for
    // the new field, should it come before the answer, is read into this field (by name).
    if !state.store.claim_field_for_sending(&field.id, org).await? {
        return Err(WriteBackError::AlreadyWritten {
            org: org.to_string(),
            field: "(being sent now)".into(),
        });
    }
    let created = auth.api().create_field(&auth.token, org, &field.name).await;
    let field_url = match created {
        Ok(url) => url,
        Err(e) => {
            state.store.release_field_claim(&field.id).await?;
            auth.flush_events(state, &cred.id).await?;
            return Err(e.into());
        }
    };
    // Linked at once: should the boundary fail, the next sync still reads John Deere's field
    // into this one instead of adding a copy.
    let provider_field_id = last_segment(&field_url);
    state
        .store
        .link_user_field(&field.id, org, &provider_field_id, None)
        .await?;
    let sent = auth
        .api()
        .create_boundary(&auth.token, &field_url, &boundary)
        .await;
    // The exchanges go to the credential's events whatever the outcome.
    auth.flush_events(state, &cred.id).await?;
    let provider_boundary_id = last_segment(&sent?);
    state
        .store
        .link_user_field(
            &field.id,
            org,
            &provider_field_id,
            Some(&provider_boundary_id),
        )
        .await?;
    Ok(WrittenField {
        organization_id: org.to_string(),
        provider_field_id,
        provider_boundary_id,
    })
}
