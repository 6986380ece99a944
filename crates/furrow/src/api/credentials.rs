//! `/services/usermanagement/api/users/{leafUserId}/john-deere-credentials` and its events.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, ApiJson, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::domain::credential::ClientEnvironment;
use crate::store::CredentialRecord;
use crate::sync::credentials::{self, NewCredential};
use crate::sync::webhooks::Unsubscribe;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            get_credential,
            create_credential,
            delete_credential
        ))
        .routes(routes!(events))
}

const MASK: &str = "********";

/// The credential resource of the seed document.
pub fn credential_json(state: &AppState, c: &CredentialRecord) -> ApiResult<Value> {
    let reveal = |enc: &str| -> ApiResult<String> {
        if state.settings.mask_secrets {
            return Ok(MASK.into());
        }
        state
            .keyring
            .decrypt(enc)
            .map(|s| s.expose_secret().to_string())
            .map_err(ApiError::internal)
    };
    Ok(json!({
        "id": c.id,
        "status": c.status,
        "createdTime": c.created_at,
        "tokenMetadata": {"scopes": c.scopes.split_whitespace().collect::<Vec<_>>()},
        "clientKey": c.client_key,
        "clientSecret": reveal(&c.client_secret_enc)?,
        "accessToken": c.access_token_enc.as_deref().map(reveal).transpose()?,
        "refreshToken": reveal(&c.refresh_token_enc)?,
        "clientEnvironment": c.environment,
    }))
}

pub(crate) async fn user_must_exist(
    state: &AppState,
    owner: &Owner,
    raw_id: &str,
) -> ApiResult<String> {
    let id = parse_id(raw_id, "Leaf user")?;
    state
        .store
        .user(&owner.id, &id)
        .await?
        .map(|u| u.id)
        .ok_or(ApiError::NotFound("Leaf user"))
}

/// The user's John Deere credentials.
#[utoipa::path(get, path = "/services/usermanagement/api/users/{id}/john-deere-credentials",
    tag = "credentials", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    responses((status = 200, description = "The credentials", body = schemas::Credential)))]
async fn get_credential(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = parse_id(&id, "Leaf user")?;
    // One lookup on the hot path; which 404 it is only matters when there is nothing.
    match state.store.credential_of_user(&owner.id, &user).await? {
        Some(c) => Ok(Json(credential_json(&state, &c)?)),
        None => {
            user_must_exist(&state, &owner, &id).await?;
            Err(ApiError::NotFound("John Deere credentials"))
        }
    }
}

/// John Deere credentials: the app's client key and secret and the grower's refresh token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    client_key: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    /// `STAGE` or `PRODUCTION`.
    client_environment: Option<String>,
}

pub(crate) fn required(value: Option<String>, field: &str) -> ApiResult<String> {
    match value.map(|v| v.trim().to_string()) {
        Some(v) if !v.is_empty() && v.len() <= 4096 => Ok(v),
        Some(v) if v.len() > 4096 => Err(ApiError::bad(field, "must be at most 4096 characters")),
        _ => Err(ApiError::bad(field, "is required")),
    }
}

/// Add John Deere credentials to a user: the refresh token is checked with John Deere and the
/// first sync is queued.
#[utoipa::path(post, path = "/services/usermanagement/api/users/{id}/john-deere-credentials",
    tag = "credentials", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    request_body = CreateBody,
    responses((status = 201, description = "Stored (replacing any the user had)", body = schemas::Credential)))]
async fn create_credential(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let user = user_must_exist(&state, &owner, &id).await?;
    let client_key = required(body.client_key, "clientKey")?;
    let client_secret = SecretString::from(required(body.client_secret, "clientSecret")?);
    let refresh_token = SecretString::from(required(body.refresh_token, "refreshToken")?);
    let env = required(body.client_environment, "clientEnvironment")?;
    let environment = ClientEnvironment::parse(&env)
        .ok_or_else(|| ApiError::bad("clientEnvironment", "must be STAGE or PRODUCTION"))?;
    let record = credentials::create(
        &state,
        &user,
        NewCredential {
            client_key,
            client_secret,
            refresh_token,
            environment,
        },
    )
    .await?;
    Ok(super::created(
        format!("/services/usermanagement/api/users/{user}/john-deere-credentials"),
        Json(credential_json(&state, &record)?),
    ))
}

/// Remove the user's John Deere credentials (and furrow's event subscriptions at John Deere).
#[utoipa::path(delete, path = "/services/usermanagement/api/users/{id}/john-deere-credentials",
    tag = "credentials", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    responses((status = 204, description = "Removed")))]
async fn delete_credential(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let user = user_must_exist(&state, &owner, &id).await?;
    let unsubscribe = Unsubscribe::prepare(&state, &user).await;
    if let Some(subscriptions) = state.store.delete_credential(&owner.id, &user).await? {
        if let Some(u) = unsubscribe {
            u.spawn(subscriptions);
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("John Deere credentials"))
    }
}

/// Calls furrow made to John Deere for these credentials (token refreshes and checks), newest
/// first unless `sort=createdDate,asc`.
#[utoipa::path(get, path = "/services/usermanagement/api/users/{id}/john-deere-credentials/events",
    tag = "credentials",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), PageQuery,
        ("sort" = Option<String>, Query, description = "`createdDate,desc` (default) or `createdDate,asc`", pattern = "^createdDate(,(asc|desc))?$")),
    responses((status = 200, description = "Events", body = Vec<schemas::CredentialEvent>)))]
async fn events(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let user = user_must_exist(&state, &owner, &id).await?;
    let paging = Paging::from_params(&params)?;
    let newest_first = match params.get("sort") {
        None | Some("createdDate,desc") => true,
        Some("createdDate,asc") | Some("createdDate") => false,
        Some(_) => {
            return Err(ApiError::bad(
                "sort",
                "must be createdDate,desc or createdDate,asc",
            ))
        }
    };
    let c = state
        .store
        .credential_of_user(&owner.id, &user)
        .await?
        .ok_or(ApiError::NotFound("John Deere credentials"))?;
    let (events, total) = state
        .store
        .list_events(&c.id, newest_first, paging.offset(), paging.size)
        .await?;
    let body: Vec<Value> = events
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id, "body": e.body, "headers": e.headers, "statusCode": e.status_code,
                "createdDate": e.created_at, "method": e.method, "url": e.url,
            })
        })
        .collect();
    let path = format!("/services/usermanagement/api/users/{user}/john-deere-credentials/events");
    Ok((paging.headers(total, &path), Json(Value::Array(body))))
}
