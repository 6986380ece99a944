//! John Deere organizations of a Leaf user (`/services/usermanagement/api`): the connected /
//! not-connected list and Leaf's sync management (SELECTED ⇄ PREVIEW; BLOCKED is fixed through
//! `managementUri`, then `/sync`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::domain::organization::OrgStatus;
use crate::store::{CredentialRecord, OrganizationRecord};
use crate::sync::organizations::{resync, ResyncError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(connection_list))
        .routes(routes!(list))
        // Leaf's docs show both POST and PATCH for the re-sync; both are accepted.
        .routes(routes!(sync))
        .routes(routes!(one))
        .routes(routes!(set_status))
}

fn check_provider(provider: &str) -> ApiResult<()> {
    if provider == "JohnDeere" {
        Ok(())
    } else {
        Err(ApiError::bad("provider", "furrow supports JohnDeere only"))
    }
}

/// The user's credential (404s for another owner's user, a missing user or no credentials).
async fn credential(
    state: &AppState,
    owner: &Owner,
    raw_user: &str,
) -> ApiResult<CredentialRecord> {
    let user = parse_id(raw_user, "Leaf user")?;
    if let Some(c) = state.store.credential_of_user(&owner.id, &user).await? {
        return Ok(c);
    }
    state
        .store
        .user(&owner.id, &user)
        .await?
        .ok_or(ApiError::NotFound("Leaf user"))?;
    Err(ApiError::NotFound("John Deere credentials"))
}

fn org_json(o: &OrganizationRecord) -> Value {
    json!({"providerOrgId": o.provider_org_id, "providerOrgName": o.name, "status": o.status,
           "managementUri": o.management_uri, "syncError": o.sync_error, "partner": o.partner})
}

/// The organizations the grower connected to the app at John Deere, and those not connected.
#[utoipa::path(get, path = "/services/usermanagement/api/users/{id}/organizations/{provider}",
    tag = "organizations", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("provider" = String, Path, description = "`JohnDeere` (furrow connects no other provider)", example = "JohnDeere", pattern = "^JohnDeere$")),
    responses((status = 200, description = "Connected and not connected organizations", body = schemas::OrganizationConnections)))]
async fn connection_list(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, provider)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    check_provider(&provider)?;
    let c = credential(&state, &owner, &user).await?;
    let orgs = state.store.organizations(&c.id).await?;
    let entry = |o: &OrganizationRecord| json!({"id": o.provider_org_id, "name": o.name, "managementUri": o.management_uri});
    Ok(Json(json!({
        "connectedOrganizations": orgs.iter().filter(|o| o.connected).map(entry).collect::<Vec<_>>(),
        "notConnectedOrganizations": orgs.iter().filter(|o| !o.connected).map(entry).collect::<Vec<_>>(),
    })))
}

/// The credential's organizations with their sync status.
#[utoipa::path(get, path = "/services/usermanagement/api/users/{id}/{provider}/organizations",
    tag = "organizations", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("provider" = String, Path, description = "`JohnDeere` (furrow connects no other provider)", example = "JohnDeere", pattern = "^JohnDeere$"), PageQuery),
    responses((status = 200, description = "Organizations", body = Vec<schemas::Organization>)))]
async fn list(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, provider)): Path<(String, String)>,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    check_provider(&provider)?;
    let paging = Paging::from_params(&params)?;
    let c = credential(&state, &owner, &user).await?;
    let orgs = state.store.organizations(&c.id).await?;
    let page: Vec<Value> = orgs
        .iter()
        .skip(paging.offset() as usize)
        .take(paging.size as usize)
        .map(org_json)
        .collect();
    let path = format!("/services/usermanagement/api/users/{user}/JohnDeere/organizations");
    Ok((
        paging.headers(orgs.len() as i64, &path),
        Json(Value::Array(page)),
    ))
}

/// One organization.
#[utoipa::path(get, path = "/services/usermanagement/api/users/{id}/{provider}/organizations/{org}",
    tag = "organizations", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("provider" = String, Path, description = "`JohnDeere` (furrow connects no other provider)", example = "JohnDeere", pattern = "^JohnDeere$"), ("org" = String, Path, description = "John Deere organization id")),
    responses((status = 200, description = "The organization", body = schemas::Organization)))]
async fn one(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, provider, org)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    check_provider(&provider)?;
    let c = credential(&state, &owner, &user).await?;
    let orgs = state.store.organizations(&c.id).await?;
    orgs.iter()
        .find(|o| o.provider_org_id == org)
        .map(|o| Json(org_json(o)))
        .ok_or(ApiError::NotFound("organization"))
}

/// Sync an organization (`SELECTED`) or only list it (`PREVIEW`).
#[utoipa::path(patch, path = "/services/usermanagement/api/users/{id}/{provider}/organizations/{org}/{status}",
    tag = "organizations",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("provider" = String, Path, description = "`JohnDeere` (furrow connects no other provider)", example = "JohnDeere", pattern = "^JohnDeere$"), ("org" = String, Path, description = "John Deere organization id"), ("status" = String, Path, description = "`SELECTED` or `PREVIEW`", pattern = "^(SELECTED|PREVIEW)$")),
    responses(
        (status = 200, description = "The organization with its new status", body = schemas::Organization),
        (status = 409, description = "Changed meanwhile", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
async fn set_status(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, provider, org, status)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    check_provider(&provider)?;
    let target = match OrgStatus::parse(&status) {
        Some(OrgStatus::Blocked) => {
            return Err(ApiError::bad(
                "status",
                "BLOCKED is set by John Deere's connections, not by PATCH",
            ))
        }
        Some(s) => s,
        None => return Err(ApiError::bad("status", "must be SELECTED or PREVIEW")),
    };
    let c = credential(&state, &owner, &user).await?;
    let orgs = state.store.organizations(&c.id).await?;
    let current = orgs
        .iter()
        .find(|o| o.provider_org_id == org)
        .ok_or(ApiError::NotFound("organization"))?;
    if current.status == OrgStatus::Blocked.as_str() {
        return Err(ApiError::BadRequest {
            field: Some("status".into()),
            detail: format!(
                "organization {org} is BLOCKED: connect it through its managementUri ({}), then POST …/JohnDeere/organizations/sync",
                current.management_uri.as_deref().unwrap_or("none")
            ),
        });
    }
    if !state
        .store
        .set_organization_status(&c.id, &org, &current.status, target.as_str())
        .await?
    {
        return Err(ApiError::Conflict(
            "the organization changed meanwhile; read it again".into(),
        ));
    }
    // What syncs changed: the sync job runs now (and subscribes or unsubscribes the org).
    state.store.wake_job(&c.id, "sync").await?;
    let updated = OrganizationRecord {
        status: target.as_str().into(),
        ..current.clone()
    };
    Ok(Json(org_json(&updated)))
}

/// Read the credential's organizations from John Deere again (after the grower connected or
/// disconnected some).
#[utoipa::path(method(post, patch), path = "/services/usermanagement/api/users/{id}/{provider}/organizations/sync",
    tag = "organizations", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("provider" = String, Path, description = "`JohnDeere` (furrow connects no other provider)", example = "JohnDeere", pattern = "^JohnDeere$")),
    responses(
        (status = 200, description = "The organizations now", body = Vec<schemas::Organization>),
        (status = 409, description = "The credentials are not usable", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "John Deere did not answer as expected", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
async fn sync(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, provider)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    check_provider(&provider)?;
    let c = credential(&state, &owner, &user).await?;
    match resync(&state, &c).await {
        Ok(orgs) => Ok(Json(Value::Array(orgs.iter().map(org_json).collect()))),
        Err(ResyncError::NotUsable(status)) => Err(ApiError::Conflict(format!(
            "the John Deere credentials are {status}; post new credentials first"
        ))),
        Err(ResyncError::Upstream(detail)) => Err(ApiError::Rejected {
            status: axum::http::StatusCode::BAD_GATEWAY,
            detail: format!("John Deere did not answer as expected: {detail}"),
        }),
        Err(e) => Err(ApiError::internal(e)),
    }
}
